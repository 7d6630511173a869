"""`cifar10`: CIFAR-10 from an image-folder tree (root/{train,test}/<class>/*) or from torchvision's
pickled batches in root (downloaded there where `source.download`), classes in the order of
`source.classes_file`. From the batches the `source` column is `torchvision-cifar10:<split>/<i>`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ...errors import DataError
from ..classes import read_class_table, table_classes
from ..folders import DEFAULT_SPLITS, imagefolder_manifest
from ..tables import MANIFEST_COLUMNS
from .base import SOURCE_KINDS, DataSource, Fingerprint, FolderLayout

if TYPE_CHECKING:
    import torch

TORCHVISION_CIFAR10 = "torchvision-cifar10:"


def cifar10_manifest(source_cfg: dict) -> pd.DataFrame:
    """CIFAR-10 from an ImageFolder tree (root/{train,test}/<class>/*) or torchvision's pickles."""
    root = Path(source_cfg["root"])
    if (root / "train").is_dir():
        return imagefolder_manifest(root, DEFAULT_SPLITS, *table_classes(source_cfg))
    _, names = read_class_table(source_cfg["classes_file"])
    rows = []
    for split in ("train", "test"):
        targets = _torchvision_cifar10(root, split, source_cfg.get("download", False)).targets
        for i, target in enumerate(targets):
            rows.append({"image_id": f"{split}/{i:05d}", "label": int(target), "class_name": names[int(target)], "split": split, "source": f"{TORCHVISION_CIFAR10}{split}/{i}"})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def _torchvision_cifar10(root: Path, split: str, download: bool):
    from torchvision.datasets import CIFAR10

    try:
        return CIFAR10(str(root), train=split == "train", download=download)
    except RuntimeError as exc:
        raise _cifar10_missing(root) from exc


def _cifar10_missing(root: Path) -> DataError:
    return DataError(
        f"CIFAR-10 not found under {root}: set `source.download: true` on a machine with network, "
        "or point `source.root` at a folder with train/<class>/ and test/<class>/ images"
    )


def load_torchvision_cifar10(root, sources) -> torch.Tensor:
    """uint8 (N,3,32,32) for sources 'torchvision-cifar10:<split>/<i>'."""
    import torch

    cache: dict[str, np.ndarray] = {}
    out = []
    for item in sources:
        split, index = item.removeprefix(TORCHVISION_CIFAR10).split("/")
        if split not in cache:
            cache[split] = _torchvision_cifar10(Path(root), split, False).data
        out.append(cache[split][int(index)])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@SOURCE_KINDS.register
class Cifar10(DataSource):
    name = "cifar10"
    config_keys = ("root", "classes_file", "download")

    def manifest(self, source_cfg: dict, seed: int) -> pd.DataFrame:
        return cifar10_manifest(source_cfg)

    def reads_files(self, rows: pd.DataFrame, source_cfg: dict) -> bool:
        return not (len(rows) and str(rows.source.iloc[0]).startswith(TORCHVISION_CIFAR10))

    def load_arrays(self, rows: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
        images = load_torchvision_cifar10(source_cfg["root"], rows.source.tolist())
        if image_size != images.shape[-1]:
            from torchvision.transforms.v2 import functional as TF

            images = TF.resize(images, [image_size, image_size], antialias=True)
        return images

    def folder_layout(self, source_cfg: dict) -> FolderLayout | None:
        """None for torchvision's batches (no train/ folder in root)."""
        root = Path(source_cfg.get("root", "."))
        if (root / "train").is_dir():
            return FolderLayout(root, DEFAULT_SPLITS, *table_classes(source_cfg))
        return None

    def classes_without_folders(self, source_cfg: dict, fingerprint: Fingerprint) -> list[str]:
        _, names = table_classes(source_cfg)
        root = Path(source_cfg.get("root", "."))
        if not root.is_dir() and not source_cfg.get("download"):
            raise _cifar10_missing(root)
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file():
                fingerprint.add(path)
        return names
