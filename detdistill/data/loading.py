"""Manifest rows to images: uint8 (N,3,S,S) tensors, from image files (decoded once, then read
back from the decoded-pixel store, `detdistill.pixel_cache`) or from the arrays a source kind
holds; and the images of distilled sets (real rows, or synthetic PNGs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from ..image_files import read_rgb
from .sources import source_kind
from .tables import row_chunks

if TYPE_CHECKING:  # torch is imported where images are loaded: Snakemake imports this package for its DAG
    import torch


def decode_image_files(paths, image_size: int) -> torch.Tensor:
    """Decode image files as uint8 (N,3,S,S) (detdistill.image_files.viewer_rgb), resize the
    short side to S, centre-crop. On the job's torch threads (`threads:`): Pillow's decoder and
    torch's resize release the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from torchvision.transforms.v2 import functional as TF

    def decode(path) -> torch.Tensor:
        return TF.center_crop(TF.resize(read_rgb(path), image_size, antialias=True), [image_size, image_size])

    out = torch.empty((len(paths), 3, image_size, image_size), dtype=torch.uint8)
    workers = min(torch.get_num_threads(), max(1, len(paths) // 64))
    if workers <= 1:
        for i, path in enumerate(paths):
            out[i] = decode(path)
        return out
    with ThreadPoolExecutor(workers) as pool:
        for i, tensor in enumerate(pool.map(decode, paths)):
            out[i] = tensor
    return out


def load_image_files(paths, image_size: int) -> torch.Tensor:
    """Image files as uint8 (N,3,S,S) (see `decode_image_files`), read back from the decoded-pixel
    store when an earlier job decoded the same files at this size (`detdistill.pixel_cache`)."""
    from .. import pixel_cache

    return pixel_cache.load(paths, image_size, lambda names: decode_image_files(names, image_size))


def load_images(manifest: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
    """uint8 (N,3,S,S) images for the manifest rows, in row order."""
    source = source_kind(source_cfg)
    if source.reads_files(manifest, source_cfg):
        return load_image_files(manifest.source.tolist(), image_size)
    return source.load_arrays(manifest, source_cfg, image_size)


def image_chunks(frame: pd.DataFrame, source_cfg: dict, image_size: int, chunk_size: int) -> Iterator[torch.Tensor]:
    """`load_images` of the frame's rows `chunk_size` at a time (the chunks of `row_chunks`), for
    stages that never hold them all; image files come from the decoded-pixel store when a whole
    load of the same rows put them there (detdistill.pixel_cache.chunks)."""
    if frame.empty or not source_kind(source_cfg).reads_files(frame, source_cfg):
        for chunk in row_chunks(frame, chunk_size):
            yield load_images(chunk, source_cfg, image_size)
        return
    from .. import pixel_cache

    yield from pixel_cache.chunks(frame.source.tolist(), image_size, chunk_size,
                                  lambda names: decode_image_files(names, image_size))


def load_png_images(paths, image_size: int | None = None) -> torch.Tensor:
    """uint8 (N,3,H,W) from PNG files, optionally resized (antialiased) to `image_size`."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    images = torch.stack([read_rgb(p) for p in paths])
    if image_size is not None and images.shape[-1] != image_size:
        images = TF.resize(images, [image_size, image_size], antialias=True)
    return images


def load_set_images(set_frame: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
    """A set's images: real rows from the dataset, synthetic ones from their PNGs."""
    if (set_frame.kind == "real").all():
        return load_images(set_frame, source_cfg, image_size)
    return load_png_images(set_frame.image_path, image_size)
