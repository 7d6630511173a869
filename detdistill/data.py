"""Datasets: a manifest table of every image and a loader that turns manifest rows into tensors.

Manifest columns: image_id (str, unique), label (int), class_name (str), split ('train'|'val'|'test'),
source (file path, or the row index inside a bundled array dataset). 'val' rows exist only with
`source.validation_fraction` > 0: real images carved from the train split that nothing trains on.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .errors import DataError
from .image_files import (
    FolderListing,
    check_images_decode,
    check_split_classes,
    class_folders_in,
    list_class_folder,
    read_rgb,
    skipped_lines,
)

if TYPE_CHECKING:  # torch is imported where images are loaded: Snakemake imports this module for its DAG
    import torch

MANIFEST_COLUMNS = ["image_id", "label", "class_name", "split", "source"]

log = logging.getLogger("detdistill")


# --------------------------------------------------------------------------- digits (embedded)
DIGITS_SHAPE = (1797, 65)  # scikit-learn's digits file: 64 pixel columns and the label, one row an image


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


def _digits_arrays():
    table = _digits_table()
    images = table[:, :-1].reshape(-1, 8, 8)
    # 8x8 intensities 0..16 -> 0..1
    return images.astype(np.float32) / 16.0, table[:, -1].astype(np.int64)


def digits_manifest(test_fraction: float, seed: int) -> pd.DataFrame:
    from sklearn.model_selection import train_test_split

    _, labels = _digits_arrays()
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

    images, _ = _digits_arrays()
    batch = torch.from_numpy(images[np.asarray(indices, dtype=np.int64)]).unsqueeze(1)
    batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", align_corners=False)
    batch = batch.clamp(0, 1).expand(-1, 3, -1, -1)
    return (batch * 255).round().to(torch.uint8).contiguous()


# --------------------------------------------------------------------------- image folders
# Listed with os.scandir (detdistill.image_files), not torchvision's find_classes / make_dataset:
# the listing also runs while Snakemake builds the DAG (inspect_source), where importing
# torchvision (and torch) cost 27-34 s against 3 s for this module on a loaded 2-core machine, and
# make_dataset neither skips system files by name nor reports what it left out.
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
    folders, names = _folder_classes(root, splits, class_folders, class_names)
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


def _folder_classes(root, splits: dict[str, str], class_folders, class_names) -> tuple[list[str], list[str]]:
    """(class folders, human names) in label order: the explicit list, else the sorted train folders."""
    folders = list(class_folders or class_folders_in(Path(root) / splits["train"]))
    names = list(class_names or folders)
    if len(names) != len(folders):
        raise DataError(f"`source.class_names` has {len(names)} entries but there are {len(folders)} class folders: give one name per class")
    return folders, names


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
    from . import pixel_cache

    return pixel_cache.load(paths, image_size, lambda names: decode_image_files(names, image_size))


# --------------------------------------------------------------------------- paper datasets
def read_class_table(path) -> tuple[list[str], list[str]]:
    """(folder ids, human names) in the table's explicit row order: the label order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"class table {path} not found (config key `source.classes_file`)")
    table = pd.read_csv(path, dtype=str)
    key = "wnid" if "wnid" in table.columns else "folder"
    if key not in table.columns or "name" not in table.columns:
        raise DataError(f"class table {path} needs columns `wnid` (or `folder`) and `name`")
    return table[key].tolist(), table["name"].tolist()


def table_classes(source_cfg: dict) -> tuple[list[str], list[str]]:
    """(folders, human names) of `source.classes_file`, cut to `source.classes` (by folder or
    name, in the order given) when that is set."""
    folders, names = read_class_table(source_cfg["classes_file"])
    return subset_classes(folders, names, source_cfg.get("classes"), f"`source.classes_file` {source_cfg['classes_file']}")


def subset_classes(folders: list[str], names: list[str], keep, where: str) -> tuple[list[str], list[str]]:
    """The classes in `keep` (folder or human name each), in that order; all of them when None."""
    if not keep:
        return folders, names
    by_key = {**dict(zip(folders, zip(folders, names))), **dict(zip(names, zip(folders, names)))}
    unknown = [c for c in map(str, keep) if c not in by_key]
    if unknown:
        raise DataError(f"`source.classes` {unknown} are not in {where}: use its folder or class names")
    folders, names = map(list, zip(*(by_key[str(c)] for c in keep)))
    return folders, names


IMAGENETTE_SPLITS = {"train": "train", "test": "val"}
DEFAULT_SPLITS = {"train": "train", "test": "test"}


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


# --------------------------------------------------------------------------- dispatch
def build_manifest(source_cfg: dict, seed: int) -> pd.DataFrame:
    kind = source_cfg["kind"]
    if kind == "digits":
        manifest = digits_manifest(source_cfg.get("test_fraction", 0.2), seed)
    elif kind == "imagenette2":
        manifest = imagenette2_manifest(source_cfg)
    elif kind == "cifar10":
        manifest = cifar10_manifest(source_cfg)
    elif kind == "imagefolder":
        manifest = imagefolder_manifest(
            source_cfg["root"],
            source_cfg.get("splits", DEFAULT_SPLITS),
            source_cfg.get("classes"),
            source_cfg.get("class_names"),
        )
    else:
        raise DataError(f"unknown dataset source kind {kind!r} (config key `source.kind`)")
    if source_cfg.get("classes") and _array_source(source_cfg):  # folder layouts filter while listing
        manifest = select_classes(manifest, [str(c) for c in source_cfg["classes"]])
    _check_manifest(manifest)
    if source_cfg.get("label_noise"):
        from .noise import apply_label_noise  # noise reads this module's names

        manifest = apply_label_noise(manifest, source_cfg["label_noise"], seed, source_cfg.get("root"))
    # carved after the label noise, so validation images carry the labels the train split has, but
    # drawn by true class (carve_validation): every arm of a noise experiment holds out the same images
    return carve_validation(manifest, source_cfg.get("validation_fraction", 0), seed)


def validation_count(train_images: int, fraction: float) -> int:
    """Validation images carved from a class with `train_images` train images: floor(fraction x n),
    at least 1 when fraction > 0 (so per-class calibration has an image of every class). A
    function of the count alone, so the workflow can check the IPC before the manifest exists."""
    return 0 if fraction <= 0 else max(1, math.floor(fraction * train_images))


def carve_validation(manifest: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Move `validation_count` train images of every class to split 'val', drawn by a generator
    seeded with `seed` and the class name (not the label, which `source.classes` renumbers), so a
    class's draw does not depend on which other classes are kept. The test split is untouched;
    every class keeps at least one train image (else DataError).

    With label noise put on (`clean_label` present) the classes drawn from are the true ones, so
    the same images are held out whatever the noise (a noisy arm and the clean arm of an
    experiment train on the same images, only their labels differ), and the held-out images keep
    their observed labels, as a user's noisy validation folder would."""
    if fraction <= 0:
        return manifest
    manifest = manifest.copy()
    label, name = ("clean_label", "clean_class_name") if "clean_label" in manifest.columns else ("label", "class_name")
    for _, group in manifest[manifest.split == "train"].groupby(label, sort=True):
        count = validation_count(len(group), fraction)
        if count >= len(group):
            raise DataError(
                f"class {group[name].iloc[0]!r} has {len(group)} train image(s): `source.validation_fraction` "
                f"{fraction} leaves none to train on; lower it, or add images"
            )
        rng = np.random.default_rng([seed, zlib.crc32(str(group[name].iloc[0]).encode())])
        manifest.loc[rng.choice(group.index.to_numpy(), count, replace=False), "split"] = "val"
    emptied = sorted(set(manifest.class_name[manifest.split != "test"]) - set(manifest.class_name[manifest.split == "train"]))
    if emptied:  # only the noisy labels of a tiny class can all fall into the held-out images
        raise DataError(f"observed class(es) {emptied} keep no train image after `source.validation_fraction` "
                        f"{fraction}: lower it, or add images")
    return manifest


def _array_source(source_cfg: dict) -> bool:
    """Images held in arrays (scikit-learn's digits, torchvision's CIFAR-10 files), not image files."""
    kind = source_cfg["kind"]
    return kind == "digits" or (kind == "cifar10" and not (Path(source_cfg["root"]) / "train").is_dir())


def check_source_images(manifest: pd.DataFrame, source_cfg: dict, threads: int = 1, listing_path=None) -> dict[str, int]:
    """Every image file of the manifest decodes (DataError counting those that do not, each
    listed with its reason in `listing_path`): the count of each conversion decoding makes."""
    if _array_source(source_cfg):
        if listing_path is not None:
            check_images_decode([], threads, listing_path)
        return {}
    return dict(check_images_decode(manifest.source, threads, listing_path))


def select_classes(manifest: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """Keep the named classes, relabelled 0..len(keep)-1 in the order given."""
    unknown = sorted(set(keep) - set(manifest.class_name))
    if unknown:
        raise DataError(f"`source.classes` names unknown classes {unknown}; known: {sorted(set(manifest.class_name))}")
    new_label = {name: i for i, name in enumerate(keep)}
    kept = manifest[manifest.class_name.isin(new_label)].copy()
    kept["label"] = kept.class_name.map(new_label).astype("int64")
    return kept.reset_index(drop=True)


def check_ipc(train: pd.DataFrame, ipc: int) -> None:
    """Every class of `train` (rows with label and class_name) has at least `ipc` images."""
    counts = train.groupby("label").class_name.agg(["first", "size"])
    for name, count in counts[counts["size"] < ipc].itertuples(index=False):
        raise DataError(
            f"IPC {ipc} is more than the {count} train images of class {name!r}: lower the IPC in the target "
            "(results/<dataset>_ipc<N>.csv), add images, lower `source.validation_fraction` where set, "
            "or drop the class from `source.classes`"
        )


def _check_manifest(manifest: pd.DataFrame) -> None:
    for split in ("train", "test"):
        counts = manifest[manifest.split == split].groupby("label").size()
        if counts.empty:
            raise DataError(f"the {split} split is empty: check the dataset's `source` settings")
    if manifest.image_id.duplicated().any():
        raise DataError("duplicate image ids in the manifest")


def _from_image_files(manifest: pd.DataFrame, source_cfg: dict) -> bool:
    """Whether `load_images` reads these rows from image files (not from arrays)."""
    kind = source_cfg["kind"]
    return kind != "digits" and not (kind == "cifar10" and manifest.source.iloc[0].startswith(TORCHVISION_CIFAR10))


def load_images(manifest: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
    """uint8 (N,3,S,S) images for the manifest rows, in row order."""
    if _from_image_files(manifest, source_cfg):
        return load_image_files(manifest.source.tolist(), image_size)
    if source_cfg["kind"] == "digits":
        return load_digits_images(manifest.source.astype(int).to_numpy(), image_size)
    images = load_torchvision_cifar10(source_cfg["root"], manifest.source.tolist())  # torchvision's CIFAR-10 files
    if image_size != images.shape[-1]:
        from torchvision.transforms.v2 import functional as TF

        images = TF.resize(images, [image_size, image_size], antialias=True)
    return images


def image_chunks(frame: pd.DataFrame, source_cfg: dict, image_size: int, chunk_size: int) -> Iterator[torch.Tensor]:
    """`load_images` of the frame's rows `chunk_size` at a time (the chunks of `row_chunks`), for
    stages that never hold them all; image files come from the decoded-pixel store when a whole
    load of the same rows put them there (detdistill.pixel_cache.chunks)."""
    if frame.empty or not _from_image_files(frame, source_cfg):
        for chunk in row_chunks(frame, chunk_size):
            yield load_images(chunk, source_cfg, image_size)
        return
    from . import pixel_cache

    yield from pixel_cache.chunks(frame.source.tolist(), image_size, chunk_size,
                                  lambda names: decode_image_files(names, image_size))


def class_names(manifest: pd.DataFrame) -> list[str]:
    pairs = manifest[["label", "class_name"]].drop_duplicates().sort_values("label")
    return pairs.class_name.tolist()


# --------------------------------------------------------------------------- tables and images of the stages
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


# --------------------------------------------------------------------------- before any job runs
def folder_layout(source_cfg: dict) -> tuple[Path, dict[str, str], list[str], list[str]] | None:
    """(root, splits, class folders, human names) of a source read from image folders; None for
    array sources and for an ImageNette that its job will download."""
    kind, root = source_cfg["kind"], Path(source_cfg.get("root", "."))
    if kind == "imagefolder":
        splits = source_cfg.get("splits", DEFAULT_SPLITS)
        return root, splits, *_folder_classes(root, splits, source_cfg.get("classes"), source_cfg.get("class_names"))
    if kind == "imagenette2" and ((root / "train").is_dir() or not source_cfg.get("download")):
        return root, source_cfg.get("splits", IMAGENETTE_SPLITS), *table_classes(source_cfg)
    if kind == "cifar10" and not _array_source(source_cfg):
        return root, DEFAULT_SPLITS, *table_classes(source_cfg)
    return None


@dataclass(frozen=True)
class SourceSummary:
    class_names: list[str]
    #: train images per label, where the folders say so before the manifest exists (else None)
    train_counts: list[int] | None
    #: digest of the image files' names, sizes and modification times (and the class table's)
    fingerprint: str


def inspect_source(source_cfg: dict) -> SourceSummary:
    """What a source holds, found without decoding an image (a directory listing and a stat per
    file: 0.3-0.5 s for 10,000 files), so the workflow can check it before any job runs and rebuild
    the manifest when a folder's contents change. Missing folders, classes and images raise DataError."""
    digest = hashlib.sha256()

    def add(path: Path) -> None:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())

    if source_cfg.get("classes_file"):
        read_class_table(source_cfg["classes_file"])  # its DataError names the key
        add(Path(source_cfg["classes_file"]))
    layout = folder_layout(source_cfg)
    if layout is not None:
        root, splits, folders, names = layout
        inferred = source_cfg["kind"] == "imagefolder" and not source_cfg.get("classes")
        listings = list_image_folder(root, splits, folders, inferred)
        for listing in listings.values():
            for path in listing.images:
                add(path)
        return SourceSummary(names, [len(listings["train", f].images) for f in folders], digest.hexdigest())
    kind = source_cfg["kind"]
    if kind == "digits":
        digits = [str(i) for i in range(10)]
        _, names = subset_classes(digits, digits, source_cfg.get("classes"), "the digits 0-9")
    else:
        _, names = table_classes(source_cfg)
    root = Path(source_cfg.get("root", "."))
    if kind == "cifar10":
        if not root.is_dir() and not source_cfg.get("download"):
            raise _cifar10_missing(root)
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file():
                add(path)
    return SourceSummary(names, None, digest.hexdigest())
