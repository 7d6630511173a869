"""Image folders with the layout and counts of a real dataset and synthetic, class-dependent pixels,
for runs of the workflow at a real dataset's shapes without its download (bench/rehearsal.py)."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: imagenette2's (train, val) images per class, in resources/classes/imagenette.csv's order (fastai's
#: imagenette2: 9,469 train and 3,925 val images in all)
IMAGENETTE2_COUNTS = [(963, 387), (955, 395), (993, 357), (858, 386), (941, 409),
                      (956, 394), (961, 389), (931, 419), (951, 399), (960, 390)]
#: the name of the stamp file that records what a cached folder was built with
BUILD_STAMP = "rehearsal_build.json"


def cached_build(folder: Path, params: dict, build: Callable[[Path], None], what: str) -> dict:
    """`build(staging)` into a fresh folder that then replaces `folder`, unless `folder` was built
    with the same `params` (a stamp file in it); an interrupted build leaves no half folder."""
    params = json.loads(json.dumps(params))  # as read back: lists, not tuples
    stamp = folder / BUILD_STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        log.info("%s: %s already built", what, folder)
        return params
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    build(staging)
    (staging / stamp.name).write_text(json.dumps(params))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return params


def class_template(label: int, size: int, seed: int) -> np.ndarray:
    """A class's look: two colours blended by an oriented grating of class-specific frequency."""
    rng = np.random.default_rng([seed, label])
    colours = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(1.5, 6)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)))
    return colours[0] * (1 - wave[..., None]) + colours[1] * wave[..., None]


def _write_images(task: tuple) -> int:
    """One class and split: shifted, brightness-jittered, noisy copies of the class template."""
    from PIL import Image

    folder, names, label, split_index, size, seed = task
    template = class_template(label, size, seed)
    for i, name in enumerate(names):
        rng = np.random.default_rng([seed, label, split_index, i])
        image = np.roll(template, tuple(rng.integers(0, size, 2)), axis=(0, 1)) * rng.uniform(0.8, 1.2)
        image += rng.normal(0, 20, image.shape).astype(np.float32)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(Path(folder) / name, quality=90)
    return len(names)


def imagenette_like(root: Path, wnids: list[str], counts: list[tuple[int, int]], size: int, seed: int = 0,
                    workers: int | None = None) -> dict:
    """root/{train,val}/<wnid>/*.JPEG with (train, val) `counts` per class, named as in imagenette2,
    `size` px square; skipped when `root` was built with the same parameters. Returns them."""
    params = {"wnids": wnids, "counts": counts, "size": size, "seed": seed, "pixels": "class template + noise v1"}

    def build(staging: Path) -> None:
        tasks = []
        for label, (wnid, (n_train, n_val)) in enumerate(zip(wnids, counts)):
            # file names as in imagenette2: train/<wnid>/<wnid>_<n>.JPEG, val/<wnid>/ILSVRC2012_val_<n>.JPEG
            for split_index, (split, names) in enumerate([
                ("train", [f"{wnid}_{i}.JPEG" for i in range(n_train)]),
                ("val", [f"ILSVRC2012_val_{label * 10**5 + i:08d}.JPEG" for i in range(n_val)]),
            ]):
                folder = staging / split / wnid
                folder.mkdir(parents=True)
                # chunks of 100 images keep every worker busy to the end
                for start in range(0, len(names), 100):
                    tasks.append((str(folder), names[start : start + 100], label, split_index, size, seed))
        total = sum(a + b for a, b in counts)
        log.info("dataset: writing %d %d px JPEGs (%d classes) to %s", total, size, len(wnids), root)
        with concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count()) as pool:
            done = 0
            for n in pool.map(_write_images, tasks):
                done += n
                if done % 2000 < n:
                    log.info("dataset: %d / %d images", done, total)

    return cached_build(root, params, build, "dataset")
