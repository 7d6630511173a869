"""Device and seeding helpers shared by every stage."""

from __future__ import annotations

import random

import numpy as np
import torch


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` takes CUDA when present, else the CPU; Snakemake never sets CUDA_VISIBLE_DEVICES."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
