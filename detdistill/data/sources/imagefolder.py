"""`imagefolder`: a user's image folders, `root/<split folder>/<class folder>/**`; classes are the
`source.classes` folders in that order, else the sorted train folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..folders import DEFAULT_SPLITS, folder_classes, imagefolder_manifest
from .base import SOURCE_KINDS, DataSource, FolderLayout


@SOURCE_KINDS.register
class ImageFolder(DataSource):
    name = "imagefolder"
    config_keys = ("root", "splits", "class_names")

    def manifest(self, source_cfg: dict, seed: int) -> pd.DataFrame:
        return imagefolder_manifest(
            source_cfg["root"],
            source_cfg.get("splits", DEFAULT_SPLITS),
            source_cfg.get("classes"),
            source_cfg.get("class_names"),
        )

    def folder_layout(self, source_cfg: dict) -> FolderLayout:
        root, splits = Path(source_cfg.get("root", ".")), source_cfg.get("splits", DEFAULT_SPLITS)
        folders, names = folder_classes(root, splits, source_cfg.get("classes"), source_cfg.get("class_names"))
        return FolderLayout(root, splits, folders, names, inferred=not source_cfg.get("classes"))
