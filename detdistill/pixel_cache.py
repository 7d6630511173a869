"""Decoded-pixel store: a set of image files decoded and resized once per image size, then read
back by every later job that loads the same files at that size.

Every training, scoring and evaluation job loads its real images as uint8 (N,3,S,S) tensors
(`data.load_image_files`, `data.image_chunks`). Decoding and resizing costs ~0.25 ms per CIFAR-10
JPEG and ~3.3 ms per photo-sized one (500 x 375 to 256 px) on one core of the 2-core VM
(bench/pixel_cache.py), so each job that read CIFAR-10's 50,000 training JPEGs spent 12-13 s
before its first step, every evaluation job 2.5 s on the 10,000 test JPEGs, and at ImageNette's
size ~31 s and ~7 s (projected), again and again. The store keeps a request's decoded tensor as
one safetensors file; reading it back takes well under a second. Streamed loads (latents,
detector features, set quality) read an entry chunk by chunk, and store one as they decode when
they ask for the files in the entry's order.

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

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from . import io

#: bump when the key or the stored bytes change meaning
PIXEL_CACHE_FORMAT = 2

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


class _EntryWriter:
    """Writes an entry as its rows arrive (a safetensors file: one uint8 tensor `pixels`), so a
    streamed load can store what it decodes without holding it all, and a whole load without a
    second copy in memory (the safetensors library serializes a whole file in memory, it has no
    streaming writer). Rows go to a hidden temporary file beside the entry, renamed onto it by
    `commit` once all are written; a failed write (a full disk) abandons the entry with one
    warning and never stops the job: the store only saves time."""

    def __init__(self, entry: Path, unique: list[str], image_size: int):
        self.entry, self.count, self.image_size = entry, len(unique), int(image_size)
        self.rows, self.file, self.tmp = 0, None, None
        metadata = {"format": str(PIXEL_CACHE_FORMAT), "image_size": str(self.image_size),
                    "images": str(self.count), "first": unique[0], "last": unique[-1]}
        shape = [self.count, 3, self.image_size, self.image_size]
        header = {"__metadata__": metadata, "pixels": {"dtype": "U8", "shape": shape, "data_offsets": [0, int(np.prod(shape))]}}
        text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.name}.tmp-")
            self.file = os.fdopen(fd, "wb")
            self.file.write(len(text).to_bytes(8, "little") + text)
        except OSError as exc:
            self._abandon(exc)

    def write(self, images: torch.Tensor) -> None:
        if self.file is None:
            return
        try:
            self.file.write(images.contiguous().numpy().data)
            self.rows += len(images)
        except OSError as exc:
            self._abandon(exc)

    def commit(self) -> bool:
        """Rename the finished file onto the entry; False when it was abandoned."""
        if self.file is None:
            return False
        if self.rows != self.count:
            raise AssertionError(f"pixel cache: {self.rows} rows written for an entry of {self.count}")
        try:
            self.file.close()
            # mkstemp makes the file 0600: give it what the umask gives a new file
            os.chmod(self.tmp, 0o666 & ~io.current_umask())
            os.replace(self.tmp, self.entry)
        except OSError as exc:
            self._abandon(exc)
            return False
        self.file = None
        return True

    def discard(self) -> None:
        """Remove the temporary file unless committed (a job stopped mid-way)."""
        with contextlib.suppress(OSError):
            if self.file is not None:
                self.file.close()
        self.file = None
        with contextlib.suppress(OSError):
            if self.tmp and os.path.exists(self.tmp):
                os.unlink(self.tmp)

    def _abandon(self, exc: OSError) -> None:
        logger.warning("pixel cache: cannot store %s (%s); later jobs decode these images again", self.entry, exc)
        self.discard()


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
    writer = _EntryWriter(entry, unique, image_size)
    try:
        writer.write(decoded)
        if writer.commit():
            logger.info("pixel cache: decoded %d images at %d px in %.1f s, stored as %s",
                        len(unique), image_size, time.perf_counter() - start, entry)
    finally:
        writer.discard()
    return decoded if names == unique else _rows(decoded.numpy(), unique, names)


def chunks(paths: Sequence, image_size: int, chunk_size: int,
           decode: Callable[[list[str]], torch.Tensor]) -> Iterator[torch.Tensor]:
    """`decode` of `paths` `chunk_size` at a time, for loaders that never hold them all: read from
    the store's entry when an earlier job made it; else decoded chunk by chunk, and stored as they
    come when `paths` are in the entry's order (sorted, no repeats: a manifest's split is), so a
    streamed job stores for the whole loads after it."""
    names = [str(p) for p in paths]
    found = _entry(names, image_size)
    pixels = None if found is None else _open(found[0], len(found[1]), image_size)
    parts = [names[start:start + chunk_size] for start in range(0, len(names), chunk_size)]
    if pixels is not None:
        logger.info("pixel cache: reading %d images at %d px from %s, %d at a time",
                    len(found[1]), image_size, found[0], chunk_size)
        position = {name: i for i, name in enumerate(found[1])}
        for part in parts:
            yield _rows(pixels, found[1], part, position)
        return
    writer = _EntryWriter(found[0], found[1], image_size) if found is not None and names == found[1] else None
    try:
        for part in parts:
            images = decode(part)
            if writer is not None:
                writer.write(images)
            yield images
        if writer is not None and writer.commit():
            logger.info("pixel cache: decoded %d images at %d px %d at a time, stored as %s",
                        len(names), image_size, chunk_size, found[0])
    finally:
        if writer is not None:
            writer.discard()
