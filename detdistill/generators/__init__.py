"""Generator backends behind one interface (`base.Generator`); `load_generator` picks the backend
named in a checkpoint's `generator.json`."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Generator

__all__ = ["Generator", "load_generator"]


#: keyword options of each backend's `load` (speed settings from the `synthesis` config section)
LOAD_OPTIONS = {"embedded": ("batch_size",), "sd15": ("batch_size", "dtype", "channels_last", "compile_unet")}


def load_generator(path, device, **options) -> Generator:
    """Load the generator checkpoint folder `path` with the backend its `generator.json` names.

    `options` (None values left out) go to the backend's `load`: `batch_size` (images per pipeline
    call) for both; `dtype`, `channels_last`, `compile_unet` for sd15 only (see
    `StableDiffusionGenerator.load`). Options a backend does not take are dropped."""
    meta_path = Path(path) / "generator.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: `path` must be a generator checkpoint folder")
    backend = json.loads(meta_path.read_text()).get("backend")
    kwargs = {k: options[k] for k in LOAD_OPTIONS.get(backend, ()) if options.get(k) is not None}
    if backend == "embedded":
        from .embedded import EmbeddedGenerator

        return EmbeddedGenerator.load(path, device, **kwargs)
    if backend == "sd15":
        from .sd15 import StableDiffusionGenerator

        return StableDiffusionGenerator.load(path, device, **kwargs)
    raise ValueError(f"{meta_path}: unknown generator backend {backend!r} (expected 'embedded' or 'sd15')")
