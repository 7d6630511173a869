"""`digits`: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), split train/test by a
seeded stratified draw; the images are held in an array, the `source` column is the row index."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..classes import subset_classes
from .base import SOURCE_KINDS, DataSource, Fingerprint

if TYPE_CHECKING:
    import torch

DIGITS_SHAPE = (1797, 65)  # scikit-learn's digits file: 64 pixel columns and the label, one row an image
DIGIT_CLASSES = [str(i) for i in range(10)]


def _digits_table() -> np.ndarray:
    """scikit-learn's bundled digits, as `load_digits` reads them (its `datasets/data/digits.csv.gz`).
    The file is found without importing `sklearn.datasets`, which costs 1.3-2.5 s of every job that
    loads digits images (it imports SciPy's statistics); where the file is not where it has been
    since scikit-learn 0.x, or not the shape it has, `load_digits` itself reads it."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    paths = [Path(folder) / "datasets" / "data" / "digits.csv.gz" for folder in (spec.submodule_search_locations or [])] if spec else []
    bundled = next((path for path in paths if path.is_file()), None)
    table = np.loadtxt(bundled, delimiter=",") if bundled else None
    if table is None or table.shape != DIGITS_SHAPE:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        table = np.column_stack([bunch.data, bunch.target])
    return table


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(float32 images (1797, 8, 8) in [0, 1], int64 labels)."""
    table = _digits_table()
    images = table[:, :-1].reshape(-1, 8, 8)
    # 8x8 intensities 0..16 -> 0..1
    return images.astype(np.float32) / 16.0, table[:, -1].astype(np.int64)


def digits_manifest(test_fraction: float, seed: int) -> pd.DataFrame:
    from sklearn.model_selection import train_test_split

    _, labels = digits_arrays()
    index = np.arange(len(labels))
    train_idx, _ = train_test_split(
        index, test_size=test_fraction, stratify=labels, random_state=seed
    )
    train = set(train_idx.tolist())
    return pd.DataFrame(
        {
            "image_id": [f"digits-{i:04d}" for i in index],
            "label": labels,
            "class_name": [str(int(y)) for y in labels],
            "split": ["train" if i in train else "test" for i in index],
            "source": [str(i) for i in index],
        }
    )


def load_digits_images(indices, image_size: int) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    images, _ = digits_arrays()
    batch = torch.from_numpy(images[np.asarray(indices, dtype=np.int64)]).unsqueeze(1)
    batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", align_corners=False)
    batch = batch.clamp(0, 1).expand(-1, 3, -1, -1)
    return (batch * 255).round().to(torch.uint8).contiguous()


@SOURCE_KINDS.register
class Digits(DataSource):
    name = "digits"
    config_keys = ("test_fraction",)

    def manifest(self, source_cfg: dict, seed: int) -> pd.DataFrame:
        return digits_manifest(source_cfg.get("test_fraction", 0.2), seed)

    def reads_files(self, rows: pd.DataFrame, source_cfg: dict) -> bool:
        return False

    def load_arrays(self, rows: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
        return load_digits_images(rows.source.astype(int).to_numpy(), image_size)

    def classes_without_folders(self, source_cfg: dict, fingerprint: Fingerprint) -> list[str]:
        return subset_classes(DIGIT_CLASSES, DIGIT_CLASSES, source_cfg.get("classes"), "the digits 0-9")[1]
