"""Generator backends behind one interface (`base.Generator`); `load_generator` picks the backend
named in a checkpoint's `generator.json`."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Generator

__all__ = ["Generator", "load_generator"]


def load_generator(path, device) -> Generator:
    """Load the generator checkpoint folder `path` with the backend its `generator.json` names."""
    meta_path = Path(path) / "generator.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: `path` must be a generator checkpoint folder")
    backend = json.loads(meta_path.read_text()).get("backend")
    if backend == "embedded":
        from .embedded import EmbeddedGenerator

        return EmbeddedGenerator.load(path, device)
    if backend == "sd15":
        from .sd15 import StableDiffusionGenerator

        return StableDiffusionGenerator.load(path, device)
    raise ValueError(f"{meta_path}: unknown generator backend {backend!r} (expected 'embedded' or 'sd15')")
