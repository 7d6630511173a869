"""Atomic artifact writers: every file appears complete or not at all."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the name parts of what a writer puts beside `name` before renaming it onto `name`
_TEMP_MARKERS = ("tmp-", "staging-", "old-")


def remove_leftovers(path: str | os.PathLike) -> None:
    """Delete the temporary files and staging folders of `path` (`.<name>.tmp-*`, `.staging-*`,
    `.old-*` beside it) that a killed writer left: SIGKILL skips the clean-up of `atomic_path`
    and of staging folders. Call it only as the writer that owns `path` (Snakemake runs one job
    per output at a time), never for a path others may be writing."""
    path = Path(path)
    for marker in _TEMP_MARKERS:
        for leftover in path.parent.glob(f"{glob.escape('.' + path.name)}.{marker}*"):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def make_staging_dir(out_dir: str | os.PathLike) -> Path:
    """A fresh temporary folder beside `out_dir` (`.<name>.staging-*`; an earlier, killed job's are
    removed first), with the permissions the umask gives a new folder (mkdtemp makes it 0700, and
    it becomes the artifact when renamed)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    folder = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-"))
    folder.chmod(0o777 & ~current_umask())
    return folder


@contextmanager
def atomic_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder beside `out_dir` to fill; if the block succeeds, give its contents
    the umask's permissions (some writers, e.g. mkstemp, make 0600 files) and rename it onto
    `out_dir`, an old `out_dir` moved aside first and removed after, so readers never see a half
    folder. If the block raises an error, the staging folder is removed and `out_dir` is left as
    it was; an interruption (KeyboardInterrupt, or SIGKILL, which runs nothing) leaves it for the
    next writer of `out_dir` to remove (`make_staging_dir`)."""
    out_dir = Path(out_dir)
    staging = make_staging_dir(out_dir)
    try:
        yield staging
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    umask = current_umask()
    for p in [staging, *staging.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
        os.replace(out_dir, old / "d")
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_path(path: str | os.PathLike, owner: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    `owner`: the caller is the only writer of `path`, so a killed earlier writer's temporary files
    are removed first (False for a shared store, where another job may be writing the same name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if owner:
        remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file 0600: give it what the umask gives a new file, so others on a
        # shared machine can read results when the user's umask says so
        tmp_path.chmod(0o666 & ~current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_parquet(frame, path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(frame, path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(text: str, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(data: bytes, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_png(image, path, owner: bool = True) -> None:
    """Write a float tensor (3,H,W) in [0,1], a uint8 one in [0,255] or a PIL image as PNG
    (`owner`: see atomic_path)."""
    import torch
    from PIL import Image

    if not isinstance(image, Image.Image):
        # a uint8 tensor through the float path would clamp every pixel to 0 or 1: black
        image = image.detach() if image.dtype == torch.uint8 else image.detach().clamp(0, 1).mul(255).round().byte()
        array = image.to("cpu").permute(1, 2, 0).numpy()
        image = Image.fromarray(array)
    with atomic_path(path, owner) as tmp:
        image.save(tmp, format="PNG")


def save_safetensors(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write tensors (and string metadata) as safetensors, the same bytes for the same content.

    safetensors (0.8) writes the metadata in the order of a Rust HashMap, which changes from one
    map to the next: with two or more keys, equal models gave different files (a SLURM run and a
    local run differed only there). The header is re-serialized with the metadata keys sorted."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(tensors, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    # compact and unescaped like safetensors' own serializer, so only the order changes; the
    # header keeps its padded length, hence every tensor its offset
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > size:
        raise AssertionError(f"safetensors header for {path} grew when sorted ({len(text)} > {size} bytes)")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data[:8] + text.ljust(size) + data[8 + size:])
