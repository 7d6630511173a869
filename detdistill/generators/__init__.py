"""Generator backends behind one interface (`base.Generator`); `load_generator` picks the backend
named in a checkpoint's `generator.json`."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Generator

__all__ = ["Generator", "load_generator"]


def load_generator(path, device, *, batch_size: int | None = None, **options) -> Generator:
    """Load the generator checkpoint folder `path` with the backend its `generator.json` names.

    `batch_size`: images per pipeline call (default: the backend's). `options` (`dtype`,
    `channels_last`, `compile_unet`; None values left out) go to the sd15 backend's `load` (see
    `StableDiffusionGenerator.load`); the embedded backend takes none."""
    meta_path = Path(path) / "generator.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: `path` must be a generator checkpoint folder")
    backend = json.loads(meta_path.read_text()).get("backend")
    if backend == "embedded":
        from .embedded import EmbeddedGenerator

        generator = EmbeddedGenerator.load(path, device)
    elif backend == "sd15":
        from .sd15 import StableDiffusionGenerator

        generator = StableDiffusionGenerator.load(path, device, **{k: v for k, v in options.items() if v is not None})
    else:
        raise ValueError(f"{meta_path}: unknown generator backend {backend!r} (expected 'embedded' or 'sd15')")
    if batch_size is not None:
        generator.batch_size = int(batch_size)
    return generator
