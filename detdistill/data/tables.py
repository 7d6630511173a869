"""The manifest table and what the stages read off tables: its columns, the class names in label
order, the train split, row chunks, label tensors, stacked latents, and image-folder manifests.

Manifest columns: image_id (str, unique), label (int), class_name (str), split ('train'|'val'|'test'),
source (file path, or the row index inside a bundled array dataset). 'val' rows exist only with
`source.validation_fraction` > 0: real images carved from the train split that nothing trains on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import DataError

if TYPE_CHECKING:  # torch is imported where tensors are made: Snakemake imports this package for its DAG
    import torch

MANIFEST_COLUMNS = ["image_id", "label", "class_name", "split", "source"]


def check_manifest(manifest: pd.DataFrame) -> None:
    """Train and test splits hold images, and every image id is unique (else DataError)."""
    for split in ("train", "test"):
        counts = manifest[manifest.split == split].groupby("label").size()
        if counts.empty:
            raise DataError(f"the {split} split is empty: check the dataset's `source` settings")
    if manifest.image_id.duplicated().any():
        raise DataError("duplicate image ids in the manifest")


def class_names(manifest: pd.DataFrame) -> list[str]:
    pairs = manifest[["label", "class_name"]].drop_duplicates().sort_values("label")
    return pairs.class_name.tolist()


def train_split(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest[manifest.split == "train"].reset_index(drop=True)


def row_chunks(frame: pd.DataFrame, size: int):
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def label_tensor(frame: pd.DataFrame) -> torch.Tensor:
    """The `label` column as an int64 tensor (a copy: parquet-backed arrays are read-only)."""
    import torch

    return torch.tensor(frame.label.to_numpy(), dtype=torch.long)


def latent_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The `latent` column (flattened latents) as one float32 (N, D) array."""
    return np.stack([np.asarray(v, dtype=np.float32) for v in frame.latent])


def _natural_key(path: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def read_image_dirs(dirs) -> pd.DataFrame:
    """Concatenate the manifests of image folders (one per class group), in numeric folder order
    (part2 before part10), so rows come in label order however the classes were grouped."""
    frames = [pd.read_parquet(Path(d) / "manifest.parquet") for d in sorted(map(str, dirs), key=_natural_key)]
    return pd.concat(frames, ignore_index=True)
