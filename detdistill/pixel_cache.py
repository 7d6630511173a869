"""Decoded-pixel store: a set of image files decoded and resized once per image size, then read
back by every later job that loads the same files at that size.

Every training, scoring and evaluation job loads its real images as uint8 (N,3,S,S) tensors
(`data.load_image_files`). Decoding and resizing a file costs ~0.7 ms (CIFAR-10's 32 px JPEGs to
16 px on one core of the 2-core VM: ~1,500 images/s), so each job that read CIFAR-10's 50,000
training JPEGs spent 30-40 s before its first step, and every evaluation job 6-7 s on the 10,000
test JPEGs, again and again. The store keeps a request's decoded tensor as one safetensors file;
reading it back takes well under a second.

An entry is keyed by the SHA-256 of the requested files' paths, sizes and modification times
(sorted, duplicates dropped), the image size, and the versions of the code that decodes
(torch, torchvision, Pillow): an image replaced in place, a changed size or another library
version is a miss, and a hit returns the bytes decoding would give, byte for byte (tested).
So it is shared safely by every run and arm of a config that reads the same files (the label-
noise experiment's arms all read CIFAR-10's). Requests of fewer than `min_images` files are
decoded directly: a distilled real subset of 100 images decodes in a blink.

Like the generated-image cache (detdistill/cache.py) it is a side store, not an artifact: no
rule declares it, no re-run deletes it, and `rm -r` of its folder is always safe between runs (it
only costs decoding again). Entries are written atomically; two jobs missing the same entry at
once both decode it and write the same bytes. An unreadable entry (a disk that filled up) is
decoded again and replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from . import io

#: bump when the key or the stored bytes change meaning
PIXEL_CACHE_FORMAT = 1

logger = logging.getLogger("detdistill")

_folder: Path | None = None
_min_images = 1000


def configure(folder: str | os.PathLike | None, min_images: int = 1000) -> None:
    """Where this process keeps decoded pixels (None: nowhere, every request decodes), and the
    smallest request worth an entry. Set by `workflow.setup` from the config's `pixel_cache`."""
    global _folder, _min_images
    _folder = Path(folder) if folder else None
    _min_images = int(min_images)


def _decoder_versions() -> dict:
    import PIL
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__}


def entry_key(files: Sequence[str], image_size: int) -> str:
    """The content key of `files` (sorted, unique) decoded at `image_size`; OSError when a file
    cannot be stat'ed (the caller then decodes, whose error names the file)."""
    digest = hashlib.sha256()
    header = {"format": PIXEL_CACHE_FORMAT, "image_size": int(image_size), **_decoder_versions()}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name in files:
        stat = os.stat(name)
        digest.update(f"\n{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def entry_path(folder: Path, key: str, image_size: int) -> Path:
    return folder / f"{int(image_size)}px-{key[:40]}.safetensors"


def _open(entry: Path, count: int, image_size: int) -> np.ndarray | None:
    """The entry's pixels as a read-only memory map (uint8 (count,3,S,S): rows are read from disk
    only when indexed), or None when it is missing or not what its name promises."""
    if not entry.is_file():
        return None
    shape = (count, 3, image_size, image_size)
    try:
        with open(entry, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            info = json.loads(f.read(header_size))["pixels"]
        begin, end = info["data_offsets"]
        if info["dtype"] != "U8" or tuple(info["shape"]) != shape or end - begin != np.prod(shape):
            raise ValueError(f"holds {info['dtype']} {tuple(info['shape'])}, not {count} images at {image_size} px")
        return np.memmap(entry, dtype=np.uint8, mode="r", offset=8 + header_size + begin, shape=shape)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # truncated or foreign: decode again, replace
        logger.warning("pixel cache: %s is unreadable (%s); decoding again", entry, exc)
        return None


def _entry(names: list[str], image_size: int) -> tuple[Path, list[str]] | None:
    """Where the store keeps these files at this size, and their stored (sorted, unique) order;
    None when the store is off, the request small, or a file cannot be stat'ed."""
    unique = sorted(set(names))
    if _folder is None or len(unique) < _min_images:
        return None
    try:
        return entry_path(_folder, entry_key(unique, image_size), image_size), unique
    except OSError:
        return None  # decoding names the unreadable file


def _rows(pixels: np.ndarray, unique: list[str], names: list[str], position: dict | None = None) -> torch.Tensor:
    """The stored rows of `names`, in their order, as a new uint8 tensor (`position`: unique's
    name -> row, when the caller has it)."""
    if names == unique:
        return torch.from_numpy(np.array(pixels))
    position = position or {name: i for i, name in enumerate(unique)}
    return torch.from_numpy(pixels[np.array([position[name] for name in names], dtype=np.int64)])


def load(paths: Sequence, image_size: int, decode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """`decode(paths)` (uint8 (N,3,S,S), row i from paths[i]), served from the store when an
    earlier job decoded the same files at this size, stored for later jobs when not."""
    names = [str(p) for p in paths]
    found = _entry(names, image_size)
    if found is None:
        return decode(names)
    entry, unique = found
    pixels = _open(entry, len(unique), image_size)
    if pixels is not None:
        logger.info("pixel cache: read %d images at %d px from %s", len(unique), image_size, entry)
        return _rows(pixels, unique, names)
    start = time.perf_counter()
    decoded = decode(unique)
    metadata = {"format": str(PIXEL_CACHE_FORMAT), "image_size": str(int(image_size)),
                "images": str(len(unique)), "first": unique[0], "last": unique[-1]}
    try:
        # owner=False: another job may be writing the same entry (the same bytes) right now
        io.save_safetensors({"pixels": decoded}, entry, metadata=metadata, owner=False)
        logger.info("pixel cache: decoded %d images at %d px in %.1f s, stored as %s",
                    len(unique), image_size, time.perf_counter() - start, entry)
    except OSError as exc:  # a full or read-only disk costs later jobs the decoding, nothing else
        logger.warning("pixel cache: cannot store %s (%s); later jobs decode these images again", entry, exc)
    return decoded if names == unique else _rows(decoded.numpy(), unique, names)


def chunks(paths: Sequence, image_size: int, chunk_size: int,
           decode: Callable[[list[str]], torch.Tensor]) -> Iterator[torch.Tensor]:
    """`decode` of `paths` `chunk_size` at a time, for loaders that never hold them all: read from
    the store's entry for all of `paths` when an earlier (whole) load made it, else decoded chunk
    by chunk and not stored (storing would hold them all)."""
    names = [str(p) for p in paths]
    found = _entry(names, image_size)
    pixels = None if found is None else _open(found[0], len(found[1]), image_size)
    position = None
    if pixels is not None:
        logger.info("pixel cache: reading %d images at %d px from %s, %d at a time",
                    len(found[1]), image_size, found[0], chunk_size)
        position = {name: i for i, name in enumerate(found[1])}
    for start in range(0, len(names), chunk_size):
        part = names[start:start + chunk_size]
        yield decode(part) if pixels is None else _rows(pixels, found[1], part, position)
