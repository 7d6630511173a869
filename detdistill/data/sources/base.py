"""The interface of a data source kind (a `source.kind` of config/schema.yaml): the `DataSource`
component a kind registers in `SOURCE_KINDS`, and what the pipeline asks of it: the manifest of
its images, the images of manifest rows held in arrays (kinds whose `source` column is not a file
path), and what it holds before any job runs (its folders, or its class names)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ...errors import DataError
from ...registry import Registry, UnknownName

if TYPE_CHECKING:  # torch is imported where images are loaded: Snakemake imports this package for its DAG
    import pandas as pd
    import torch

#: the `source` keys every kind has (the manifest's post-processing reads them), beside its own `config_keys`
COMMON_CONFIG_KEYS = ("kind", "classes", "label_noise", "validation_fraction")


@dataclass(frozen=True)
class FolderLayout:
    """Where a source's image files lie: `root/<splits[split]>/<class folder>/**`."""

    root: Path
    splits: dict[str, str]
    #: class folders in label order
    class_folders: list[str]
    #: human names, in the same order
    class_names: list[str]
    #: the classes are the train split's folders (no list in the config): a class folder in one split only is an error
    inferred: bool = False


@dataclass(frozen=True)
class SourceSummary:
    class_names: list[str]
    #: train images per label, where the folders say so before the manifest exists (else None)
    train_counts: list[int] | None
    #: digest of the image files' names, sizes and modification times (and the class table's)
    fingerprint: str


class Fingerprint:
    """A digest of files' names, sizes and modification times: it changes when a file does."""

    def __init__(self):
        self._digest = hashlib.sha256()

    def add(self, path: Path) -> None:
        stat = path.stat()
        self._digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class DataSource(ABC):
    """One data source kind: the `name` a dataset's `source.kind` gives, the `source` keys it
    reads, and what the pipeline asks of it. Register a subclass with `@SOURCE_KINDS.register`."""

    name: ClassVar[str]
    #: the `source` keys of config/schema.yaml's `dataset.source` it reads, beside COMMON_CONFIG_KEYS
    config_keys: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def manifest(self, source_cfg: dict, seed: int) -> pd.DataFrame:
        """Every image as a manifest row (`tables.MANIFEST_COLUMNS`). A kind reading image files
        keeps `source.classes`, when set, alone while listing; of a kind holding its images in arrays,
        `build_manifest` keeps them (`classes.select_classes`: relabelled 0..k-1 in the order given)."""

    def reads_files(self, rows: pd.DataFrame, source_cfg: dict) -> bool:
        """Whether the `source` column of `rows` holds image file paths (decoded, checked and cached
        as files); else `load_arrays` gives their images."""
        return True

    def load_arrays(self, rows: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
        """uint8 (N,3,S,S) images of rows whose images are held in arrays, in row order."""
        raise NotImplementedError(f"data source kind {self.name!r} reads image files; it holds no arrays")

    def folder_layout(self, source_cfg: dict) -> FolderLayout | None:
        """Its image folders, found without reading an image; None where its images are not (or not
        yet) in folders."""
        return None

    def classes_without_folders(self, source_cfg: dict, fingerprint: Fingerprint) -> list[str]:
        """Its class names in label order where `folder_layout` is None, adding to `fingerprint`
        the files its images come from. Missing files raise DataError."""
        raise NotImplementedError(f"data source kind {self.name!r} always has a folder layout")


SOURCE_KINDS: Registry[DataSource] = Registry("data source kind", "source.kind")


def source_kind(source_cfg: dict) -> DataSource:
    """The kind `source_cfg["kind"]` names; an unknown one raises DataError (its one line names
    the kinds known)."""
    try:
        return SOURCE_KINDS.get(source_cfg.get("kind"))
    except UnknownName as error:
        raise DataError(str(error)) from None
