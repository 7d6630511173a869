"""Label noise on the training split, seeded and recorded: the mislabeled-data setting of
Trust-Aware Diversion (TAD; Wu et al., 2025).

`apply_label_noise` turns a clean manifest into the one the workflow trains on. The `label` and
`class_name` columns become the *observed* labels (what every stage reads, as a user's mislabeled
folder would give them), and two columns keep the truth so every figure can be checked against it:
`clean_label`, `clean_class_name`. Test rows are never changed. Without noise the manifest is left
exactly as it is (no extra columns, same bytes).

Settings (`label_noise` in a dataset's config):
- symmetric, rate r: in every class, round(r * n) train images chosen at random get another class,
  uniformly among the other classes (so the realised rate is r, not a draw around it).
- asymmetric, rate r: the same share of each class in `pairs` moves to its paired class: CIFAR-10's
  standard pairs truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog (Patrini et al.,
  2017) unless `pairs` names others; classes not in `pairs` keep their labels.
- file: per-image labels from a CSV with a `path` column (relative to the dataset's root, e.g.
  `train/frog/0000.jpg`) and the label `column` holding class folder names or class names:
  CIFAR-10N (`aggregate`, `random1`-`random3`, `worst`) and fastai's noisy ImageNette / ImageWoof
  (`noisy_labels_1`, `_5`, `_25`, `_50`). For torchvision's CIFAR-10 files (no image files), row i
  of the CSV is training image i, as in the original batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .sources.cifar10 import TORCHVISION_CIFAR10
from .tables import class_names

#: Patrini et al. (2017), as used by TAD and most label-noise work on CIFAR-10
CIFAR10_ASYMMETRIC_PAIRS = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}
NOISE_KINDS = ("none", "symmetric", "asymmetric", "file")


def apply_label_noise(manifest: pd.DataFrame, noise_cfg: dict | None, seed: int, root=None) -> pd.DataFrame:
    """The manifest with observed (noisy) train labels and the clean ones kept; see the module doc.
    `root`: the dataset's folder, against which a label file's paths are read."""
    kind = (noise_cfg or {}).get("kind", "none")
    if kind == "none":
        return manifest
    if kind not in NOISE_KINDS:
        raise DataError(f"`label_noise.kind: {kind}` is unknown: use one of {', '.join(NOISE_KINDS)}")
    names = class_names(manifest)
    train = (manifest.split == "train").to_numpy()
    clean = manifest.label.to_numpy(dtype=np.int64)
    rng = np.random.default_rng([seed, 7919])  # its own stream: the split's draws stay as they were
    if kind == "symmetric":
        observed = _symmetric(clean, train, float(noise_cfg["rate"]), len(names), rng)
    elif kind == "asymmetric":
        pairs = noise_cfg.get("pairs") or CIFAR10_ASYMMETRIC_PAIRS
        observed = _asymmetric(clean, train, float(noise_cfg["rate"]), _pair_labels(pairs, names), rng)
    else:
        observed = _from_file(manifest, noise_cfg, names, root)
    noisy = manifest.copy()
    noisy["clean_label"] = clean
    noisy["clean_class_name"] = manifest.class_name.to_numpy()
    noisy["label"] = observed
    noisy["class_name"] = [names[y] for y in observed]
    return noisy


def _flip_share(clean: np.ndarray, train: np.ndarray, rate: float, classes, rng) -> dict[int, np.ndarray]:
    """Per class in `classes`: round(rate * n) of its train rows, drawn without replacement."""
    if not 0 <= rate <= 1:
        raise DataError(f"`label_noise.rate: {rate}` must lie in [0, 1]")
    chosen = {}
    for y in classes:
        rows = np.flatnonzero(train & (clean == y))
        chosen[y] = np.sort(rng.choice(rows, round(rate * len(rows)), replace=False))
    return chosen


def _symmetric(clean, train, rate, num_classes, rng) -> np.ndarray:
    observed = clean.copy()
    for y, rows in _flip_share(clean, train, rate, range(num_classes), rng).items():
        others = np.array([c for c in range(num_classes) if c != y])
        observed[rows] = rng.choice(others, len(rows))
    return observed


def _asymmetric(clean, train, rate, pairs: dict[int, int], rng) -> np.ndarray:
    observed = clean.copy()
    for y, rows in _flip_share(clean, train, rate, sorted(pairs), rng).items():
        observed[rows] = pairs[y]  # cat <-> dog: both flips read the clean labels, so no chain
    return observed


def _pair_labels(pairs: dict, names: list[str]) -> dict[int, int]:
    unknown = sorted({str(n) for kv in pairs.items() for n in kv} - set(names))
    if unknown:
        raise DataError(
            f"`label_noise.pairs` names classes {unknown} that this dataset does not have ({', '.join(names)}): "
            "give `pairs` as {from class: to class} with the dataset's class names"
        )
    return {names.index(str(a)): names.index(str(b)) for a, b in pairs.items()}


def _from_file(manifest: pd.DataFrame, noise_cfg: dict, names: list[str], root) -> np.ndarray:
    path, column = Path(noise_cfg["file"]), noise_cfg["column"]
    if not path.is_file():
        raise DataError(f"`label_noise.file: {path}` does not exist: point it at the label CSV (e.g. resources/cifar10n_labels.csv.gz)")
    table = pd.read_csv(path)
    if "path" not in table.columns or column not in table.columns:
        raise DataError(f"{path} needs a `path` column and the `label_noise.column: {column}` column; it has {', '.join(table.columns)}")
    train = (manifest.split == "train").to_numpy()
    sources = manifest.source.astype(str)
    if sources[train].str.startswith(TORCHVISION_CIFAR10).all():
        # torchvision's pickles: training image i is row i of the original batches, as in CIFAR-10N
        index = sources[train].str.rsplit("/", n=1).str[1].astype(int).to_numpy()
        if index.max() >= len(table):
            raise DataError(f"{path} has {len(table)} rows but the training split has image {index.max()}")
        given = table[column].astype(str).to_numpy()[index]
        folders = names
    else:
        if root is None:
            raise DataError("`label_noise.file` needs the dataset's folder (`source.root`) to match its `path` column")
        relative = [Path(s).relative_to(root).as_posix() for s in sources[train]]
        by_path = dict(zip(table.path.astype(str), table[column].astype(str)))
        missing = [p for p in relative if p not in by_path]
        if missing:
            raise DataError(
                f"{path} has no row for {len(missing)} of {len(relative)} training images (e.g. {missing[0]}): "
                "its `path` column must be relative to `source.root`"
            )
        given = np.array([by_path[p] for p in relative])
        # folder of each train image -> its label: the file names folders (wnids) or class names
        folders = _folder_names(manifest, names)
    observed = manifest.label.to_numpy(dtype=np.int64).copy()
    lookup = {name: i for i, name in enumerate(folders)} | {name: i for i, name in enumerate(names)}
    unknown = sorted(set(given) - set(lookup))
    if unknown:
        raise DataError(f"{path} column {column} names classes {unknown[:5]} that are not this dataset's: {', '.join(names)}")
    observed[train] = [lookup[g] for g in given]
    return observed


def _folder_names(manifest: pd.DataFrame, names: list[str]) -> list[str]:
    """The class folder of each label, from the train images' parent folders."""
    train = manifest[manifest.split == "train"]
    parents = pd.DataFrame({"label": train.label.to_numpy(), "folder": [Path(s).parent.name for s in train.source]})
    folder = parents.drop_duplicates("label").set_index("label").folder
    return [folder.get(y, names[y]) for y in range(len(names))]


def noise_summary(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per class: train images, how many carry a wrong observed label, and the share."""
    if "clean_label" not in manifest.columns:
        return pd.DataFrame(columns=["class_name", "train_images", "wrong_labels", "wrong_pct"])
    train = manifest[manifest.split == "train"]
    wrong = train.label != train.clean_label
    table = train.assign(wrong=wrong).groupby("clean_class_name", sort=False).wrong.agg(train_images="size", wrong_labels="sum")
    table["wrong_pct"] = (100 * table.wrong_labels / table.train_images).round(2)
    return table.reset_index().rename(columns={"clean_class_name": "class_name"})
