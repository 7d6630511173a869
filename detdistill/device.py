"""Device and seeding helpers shared by every stage."""

from __future__ import annotations

import random
import socket

import numpy as np
import torch

from .data import DataError

#: the config's top-level `device` (auto | cpu | cuda | cuda:N), set by detdistill.workflow.setup
_configured = "auto"


def configure_device(requested: str) -> torch.device:
    """Make `requested` every stage's device: `auto` takes CUDA when torch sees it, else the CPU
    (said on one log line); asking for CUDA where there is none stops the job with one line."""
    global _configured
    _configured = requested
    return pick_device()


def pick_device(requested: str | None = None) -> torch.device:
    """The configured device (see configure_device); Snakemake never sets CUDA_VISIBLE_DEVICES."""
    requested = requested or _configured
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(
            f"config `device: {requested}` but torch sees no CUDA GPU on {socket.gethostname()}: run on a GPU "
            "machine (cluster: the rule's gpu resource), or set `device: auto` to use the CPU where there is none"
        )
    return torch.device(requested)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def image_seed(base_seed: int, *keys: int) -> int:
    """A stable per-image seed from a base seed and integer keys (class, prototype, candidate...)."""
    seed = base_seed
    for key in keys:
        seed = (seed * 1_000_003 + int(key) + 1) % (2**63 - 1)
    return seed
