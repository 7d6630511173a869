"""Image-folder trees, `root/<split folder>/<class folder>/**`: their listing and their manifest,
shared by the kinds that read image files (imagefolder, imagenette2, CIFAR-10 as JPEG/PNG trees).

Listed with os.scandir (detdistill.image_files), not torchvision's find_classes / make_dataset:
the listing also runs while Snakemake builds the DAG (`inspect_source`), where importing
torchvision (and torch) cost 27-34 s against 3 s for this module on a loaded 2-core machine, and
make_dataset neither skips system files by name nor reports what it left out."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..image_files import FolderListing, check_split_classes, class_folders_in, list_class_folder, skipped_lines
from .tables import MANIFEST_COLUMNS

log = logging.getLogger("detdistill")

DEFAULT_SPLITS = {"train": "train", "test": "test"}


def list_image_folder(
    root: str | Path, splits: dict[str, str], class_folders: list[str], inferred: bool = False
) -> dict[tuple[str, str], FolderListing]:
    """{(split, class folder): its listing} for `root/<split folder>/<class folder>/**`. Missing
    folders, classes without images and (with `inferred` classes) class folders in one split
    only raise DataError."""
    root = Path(root)
    check_split_classes(root, splits, class_folders, inferred)
    return {(split, cls): list_class_folder(root / folder / cls) for split, folder in splits.items() for cls in class_folders}


def imagefolder_manifest(
    root: str | Path,
    splits: dict[str, str],
    class_folders: list[str] | None = None,
    class_names: list[str] | None = None,
) -> pd.DataFrame:
    """`root/<split folder>/<class folder>/**` for split folders given as {'train': 'train', 'test': 'val'}.

    Class order is the explicit `class_folders` list when given (never a file's line order),
    else the sorted folder names; `class_names` gives human names in the same order. An image's
    id is `<split>/<class folder>/<path inside the class folder, without its suffix>`.
    """
    folders, names = folder_classes(root, splits, class_folders, class_names)
    listings = list_image_folder(root, splits, folders, inferred=not class_folders)
    for line in skipped_lines(listings, splits):
        log.info("%s", line)
    rows = []
    for (split, cls_folder), listing in listings.items():
        label = folders.index(cls_folder)
        class_dir = Path(root) / splits[split] / cls_folder
        for path in listing.images:
            rows.append(
                {
                    "image_id": f"{split}/{cls_folder}/{path.relative_to(class_dir).with_suffix('').as_posix()}",
                    "label": label,
                    "class_name": names[label],
                    "split": split,
                    "source": str(path),
                }
            )
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    repeated = manifest[manifest.image_id.duplicated(keep=False)]
    if not repeated.empty:
        first = repeated[repeated.image_id == repeated.image_id.iloc[0]].source.tolist()
        raise DataError(
            f"{' and '.join(first)} differ only in their suffix ({len(repeated)} files of the dataset repeat a "
            "name so): an image is known by its name without the suffix; rename or remove one of each"
        )
    return manifest


def folder_classes(root, splits: dict[str, str], class_folders, class_names) -> tuple[list[str], list[str]]:
    """(class folders, human names) in label order: the explicit list, else the sorted train folders."""
    folders = list(class_folders or class_folders_in(Path(root) / splits["train"]))
    names = list(class_names or folders)
    if len(names) != len(folders):
        raise DataError(f"`source.class_names` has {len(names)} entries but there are {len(folders)} class folders: give one name per class")
    return folders, names
