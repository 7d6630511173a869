"""`imagenette2`: fastai's ImageNette / ImageWoof layout, root/{train,val}/<wnid>/*.JPEG, classes
in the order of `source.classes_file`; torchvision downloads ImageNette where `source.download`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..classes import table_classes
from ..folders import imagefolder_manifest
from .base import SOURCE_KINDS, DataSource, Fingerprint, FolderLayout

IMAGENETTE_SPLITS = {"train": "train", "test": "val"}


def imagenette2_manifest(source_cfg: dict) -> pd.DataFrame:
    """fastai `imagenette2` layout (ImageNette or ImageWoof): root/{train,val}/<wnid>/*.JPEG."""
    root = Path(source_cfg["root"])
    if not (root / "train").is_dir() and source_cfg.get("download"):
        _download_imagenette(root)
    return imagefolder_manifest(root, source_cfg.get("splits", IMAGENETTE_SPLITS), *table_classes(source_cfg))


def _download_imagenette(root: Path) -> None:
    """torchvision fetches `imagenette2` where the network allows; it unpacks to root/imagenette2."""
    from torchvision.datasets import Imagenette

    Imagenette(str(root.parent), split="train", size="full", download=True)
    if (root.parent / "imagenette2").is_dir() and not root.exists():
        (root.parent / "imagenette2").rename(root)


@SOURCE_KINDS.register
class Imagenette2(DataSource):
    name = "imagenette2"
    config_keys = ("root", "splits", "classes_file", "download")

    def manifest(self, source_cfg: dict, seed: int) -> pd.DataFrame:
        return imagenette2_manifest(source_cfg)

    def folder_layout(self, source_cfg: dict) -> FolderLayout | None:
        """None for an ImageNette that its job will download."""
        root = Path(source_cfg.get("root", "."))
        if (root / "train").is_dir() or not source_cfg.get("download"):
            return FolderLayout(root, source_cfg.get("splits", IMAGENETTE_SPLITS), *table_classes(source_cfg))
        return None

    def classes_without_folders(self, source_cfg: dict, fingerprint: Fingerprint) -> list[str]:
        return table_classes(source_cfg)[1]
