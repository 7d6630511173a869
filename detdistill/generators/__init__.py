"""Generator backends behind one interface (`base.Generator`), one file each, registered in
`BACKENDS` when this package is imported; `load_generator` picks the backend a checkpoint's
`generator.json` names."""

from __future__ import annotations

import json
from pathlib import Path

from . import embedded, sd15  # noqa: F401  (each registers its backend)
from .base import BACKENDS, Generator, GeneratorBackend, GeneratorNotReady

__all__ = ["BACKENDS", "Generator", "GeneratorBackend", "GeneratorNotReady", "load_generator"]


def load_generator(path, device, *, batch_size: int | None = None, **speed_options) -> Generator:
    """Load the generator checkpoint folder `path` with the backend its `generator.json` names.

    `batch_size`: images per pipeline call (default: the backend's). `speed_options` (`dtype`,
    `channels_last`, `compile_unet`; None values left out) go to the backend's `load` (the sd15
    backend uses them, see `StableDiffusionGenerator.load`; the embedded backend takes none)."""
    meta_path = Path(path) / "generator.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: `path` must be a generator checkpoint folder")
    backend = BACKENDS.get(json.loads(meta_path.read_text()).get("backend"), str(meta_path))
    generator = backend.load(path, device, **{k: v for k, v in speed_options.items() if v is not None})
    if batch_size is not None:
        generator.batch_size = int(batch_size)
    return generator
