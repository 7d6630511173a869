"""Datasets: a manifest table of every image and a loader that turns manifest rows into tensors.

Manifest columns: image_id (str, unique), label (int), class_name (str), split ('train'|'test'),
source (file path, or the row index inside a bundled array dataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

MANIFEST_COLUMNS = ["image_id", "label", "class_name", "split", "source"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".jpe", ".tif", ".tiff"}


class DataError(ValueError):
    """Bad input data; the message names the file or config key and the fix."""


# --------------------------------------------------------------------------- digits (embedded)
def _digits_arrays():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 8x8 intensities 0..16 -> 0..1
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


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
    images, _ = _digits_arrays()
    batch = torch.from_numpy(images[np.asarray(indices, dtype=np.int64)]).unsqueeze(1)
    batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", align_corners=False)
    batch = batch.clamp(0, 1).expand(-1, 3, -1, -1)
    return (batch * 255).round().to(torch.uint8).contiguous()


# --------------------------------------------------------------------------- image folders
def _class_dirs(split_dir: Path, class_names: list[str] | None) -> list[str]:
    if not split_dir.is_dir():
        raise DataError(f"dataset folder {split_dir} does not exist: set the dataset's `source.root` (and `source.splits`) to the folder holding the split folders")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if class_names is None:
        return found
    missing = [c for c in class_names if c not in found]
    if missing:
        raise DataError(f"{split_dir}: class folders {missing} are missing (config key `classes`)")
    return class_names


def imagefolder_manifest(
    root: str | Path,
    splits: dict[str, str],
    class_folders: list[str] | None = None,
    class_names: list[str] | None = None,
) -> pd.DataFrame:
    """`root/<split folder>/<class folder>/*` for split folders given as {'train': 'train', 'test': 'val'}.

    Class order is the explicit `class_folders` list when given (never a file's line order),
    else the sorted folder names; `class_names` gives human names in the same order.
    """
    root = Path(root)
    folders = class_folders or _class_dirs(root / splits["train"], None)
    names = class_names or folders
    if len(names) != len(folders):
        raise DataError(f"`class_names` has {len(names)} entries but there are {len(folders)} class folders")
    rows = []
    for split, folder in splits.items():
        split_dir = root / folder
        _class_dirs(split_dir, folders)
        for label, (cls_folder, cls_name) in enumerate(zip(folders, names)):
            files = sorted(
                p for p in (split_dir / cls_folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise DataError(f"class folder {split_dir / cls_folder} holds no images: remove the class from `classes` or add images")
            for path in files:
                rows.append(
                    {
                        "image_id": f"{split}/{cls_folder}/{path.stem}",
                        "label": label,
                        "class_name": cls_name,
                        "split": split,
                        "source": str(path),
                    }
                )
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def load_image_files(paths, image_size: int) -> torch.Tensor:
    """Load image files as uint8 (N,3,S,S): resize the short side to S, centre-crop."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF

    out = torch.empty((len(paths), 3, image_size, image_size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image {path}: {exc}. Delete or replace the file and re-run") from exc
        tensor = TF.pil_to_tensor(img)
        tensor = TF.resize(tensor, image_size, antialias=True)
        out[i] = TF.center_crop(tensor, [image_size, image_size])
    return out


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


def imagenette2_manifest(source_cfg: dict) -> pd.DataFrame:
    """fastai `imagenette2` layout (ImageNette or ImageWoof): root/{train,val}/<wnid>/*.JPEG."""
    root = Path(source_cfg["root"])
    if not (root / "train").is_dir() and source_cfg.get("download"):
        _download_imagenette(root)
    folders, names = read_class_table(source_cfg["classes_file"])
    if source_cfg.get("classes"):  # a subset, by wnid or human name, in the order given
        by_key = {**dict(zip(folders, zip(folders, names))), **dict(zip(names, zip(folders, names)))}
        unknown = [c for c in source_cfg["classes"] if c not in by_key]
        if unknown:
            raise DataError(f"`source.classes` {unknown} are not in {source_cfg['classes_file']}")
        folders, names = map(list, zip(*(by_key[c] for c in source_cfg["classes"])))
    return imagefolder_manifest(root, source_cfg.get("splits", {"train": "train", "test": "val"}), folders, names)


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
    folders, names = read_class_table(source_cfg["classes_file"])
    if (root / "train").is_dir():
        return imagefolder_manifest(root, {"train": "train", "test": "test"}, folders, names)
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
        raise DataError(
            f"CIFAR-10 not found under {root}: set `source.download: true` on a machine with network, "
            "or point `source.root` at a folder with train/<class>/ and test/<class>/ images"
        ) from exc


def load_torchvision_cifar10(root, sources) -> torch.Tensor:
    """uint8 (N,3,32,32) for sources 'torchvision-cifar10:<split>/<i>'."""
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
            source_cfg.get("splits", {"train": "train", "test": "test"}),
            source_cfg.get("classes"),
            source_cfg.get("class_names"),
        )
    else:
        raise DataError(f"unknown dataset source kind {kind!r} (config key `source.kind`)")
    if source_cfg.get("classes") and kind not in ("imagefolder", "imagenette2"):  # those filter while listing
        manifest = select_classes(manifest, [str(c) for c in source_cfg["classes"]])
    _check_manifest(manifest)
    return manifest


def select_classes(manifest: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """Keep the named classes, relabelled 0..len(keep)-1 in the order given."""
    unknown = sorted(set(keep) - set(manifest.class_name))
    if unknown:
        raise DataError(f"`source.classes` names unknown classes {unknown}; known: {sorted(set(manifest.class_name))}")
    new_label = {name: i for i, name in enumerate(keep)}
    kept = manifest[manifest.class_name.isin(new_label)].copy()
    kept["label"] = kept.class_name.map(new_label).astype("int64")
    return kept.reset_index(drop=True)


def _check_manifest(manifest: pd.DataFrame) -> None:
    for split in ("train", "test"):
        counts = manifest[manifest.split == split].groupby("label").size()
        if counts.empty:
            raise DataError(f"the {split} split is empty: check the dataset's `source` settings")
    if manifest.image_id.duplicated().any():
        raise DataError("duplicate image ids in the manifest")


def load_images(manifest: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
    """uint8 (N,3,S,S) images for the manifest rows, in row order."""
    kind = source_cfg["kind"]
    if kind == "digits":
        return load_digits_images(manifest.source.astype(int).to_numpy(), image_size)
    if kind == "cifar10" and manifest.source.iloc[0].startswith(TORCHVISION_CIFAR10):
        images = load_torchvision_cifar10(source_cfg["root"], manifest.source.tolist())
        if image_size != images.shape[-1]:
            from torchvision.transforms.v2 import functional as TF

            images = TF.resize(images, [image_size, image_size], antialias=True)
        return images
    return load_image_files(manifest.source.tolist(), image_size)


def class_names(manifest: pd.DataFrame) -> list[str]:
    pairs = manifest[["label", "class_name"]].drop_duplicates().sort_values("label")
    return pairs.class_name.tolist()
