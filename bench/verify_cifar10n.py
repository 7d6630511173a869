#!/usr/bin/env python
"""Is the `path` column of ../shared/data/cifar10n_labels.csv.gz right?

The CIFAR-10N label file gives, per CIFAR-10 training image in the original batch order, the clean
label and five human annotations. Its `path` column (`train/<class>/NNNN.jpg` of the JPEG release)
was derived by assuming each class's JPEG files are numbered in that order. Nothing in the file
checks it: `clean` equals the folder's class by construction, so a wrong within-class order would
go unseen and attach every human label to another image of the same class.

The check: humans disagree with the clean label on ambiguous images, and a classifier trained on
clean labels is less confident on those. Two-fold cross-fitting (train a ConvNet on one half of
the training images with clean labels, score the other half, and swap), then per annotation column
the ROC AUC of `1 - p(clean label)` for telling images whose human label differs from the clean one.
With the right mapping the AUC is well above 0.5; with a wrong within-class order the human labels
belong to other images and the AUC is 0.5. The control makes that concrete: the same scores with
the label rows shuffled within each class (a wrong mapping by construction).

    python bench/verify_cifar10n.py --epochs 3      # about 10-15 min on 2 CPU cores

Writes bench/measurements/cifar10n_mapping.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from detdistill.data import load_image_files
from detdistill.models import build_model
from detdistill.testing.machine import cpu_description
from detdistill.train import TrainConfig, fit_classifier, predict

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
COLUMNS = ["aggregate", "random1", "random2", "random3", "worst"]


def cross_fitted_p_clean(images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int, width: int) -> np.ndarray:
    """p(clean label) of every image from a model that never trained on it (two folds)."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(labels)) % 2
    p_clean = np.empty(len(labels), dtype=np.float32)
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, cutmix_alpha=0.0, crop_scale=None, seed=seed)
    for k in (0, 1):
        train, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        torch.manual_seed(seed + k)
        model = build_model("convnet", 10, 32, width=width)
        fit_classifier(model, images[train], labels[train], cfg, "cpu", desc=f"fold {k}")
        probs = predict(model, images[held], "cpu")["probs"]
        p_clean[held] = probs.gather(1, labels[held][:, None]).squeeze(1).numpy()
    return p_clean


def auc_table(table: pd.DataFrame, p_clean: np.ndarray) -> list[dict]:
    from sklearn.metrics import roc_auc_score

    rows = []
    for column in COLUMNS:
        differs = (table[column] != table.clean).to_numpy()
        rows.append(
            {
                "column": column,
                "differs_pct": round(100 * float(differs.mean()), 2),
                "mean_p_clean_when_differs": round(float(p_clean[differs].mean()), 4),
                "mean_p_clean_when_agrees": round(float(p_clean[~differs].mean()), 4),
                "auc": round(float(roc_auc_score(differs, 1 - p_clean)), 4),
            }
        )
    return rows


def shuffled_within_class(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The annotation columns moved to other images of the same class: a wrong mapping."""
    rng = np.random.default_rng(seed)
    shuffled = table.copy()
    for _, index in table.groupby("clean").groups.items():
        index = np.asarray(index)
        shuffled.loc[index, COLUMNS] = table.loc[rng.permutation(index), COLUMNS].to_numpy()
    return shuffled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "measurements" / "cifar10n_mapping")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    labels_file, archive = DATA / "cifar10n_labels.csv.gz", DATA / "cifar10-jpeg.tar.gz"
    if not (labels_file.exists() and archive.exists()):
        sys.exit(f"needs {labels_file} and {archive}")
    table = pd.read_csv(labels_file)
    classes = sorted(table.clean.unique())
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, members=[m for m in tar.getmembers() if "/train/" in m.name], filter="data")
        root = Path(tmp) / "cifar10"
        missing = [p for p in table.path if not (root / p).exists()]
        if missing:
            sys.exit(f"{len(missing)} paths of {labels_file} are not in {archive}, e.g. {missing[:3]}")
        images = load_image_files([root / p for p in table.path], 32)
    labels = torch.tensor(table.clean.map({c: i for i, c in enumerate(classes)}).to_numpy(), dtype=torch.long)
    p_clean = cross_fitted_p_clean(images, labels, args.epochs, args.seed, args.width)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"CPU: {cpu_description()}; {torch.get_num_threads()} threads",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}",
        "command": f"python bench/verify_cifar10n.py --epochs {args.epochs} --seed {args.seed} --width {args.width}",
        "images": len(table),
        "cross_fitted_accuracy_pct": round(100 * float((p_clean > 0.5).mean()), 2),  # a lower bound: p > 0.5 implies argmax
        "mapping_as_shipped": auc_table(table, p_clean),
        "control_shuffled_within_class": auc_table(shuffled_within_class(table, args.seed), p_clean),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    shipped = pd.DataFrame(result["mapping_as_shipped"])
    control = pd.DataFrame(result["control_shuffled_within_class"])
    lines = [
        "# CIFAR-10N: does the label file's `path` column point at the right JPEG?",
        "",
        f"- date: {result['date']}; machine: {result['machine']}; {result['versions']}",
        f"- command: `{result['command']}`",
        f"- {len(table)} training images; a ConvNet (width {args.width}) trained on clean labels, two-fold cross-fitted "
        f"({args.epochs} epochs per fold); images with p(clean) > 0.5: {result['cross_fitted_accuracy_pct']}%",
        "",
        "ROC AUC of `1 - p(clean)` for the images whose human label differs from the clean one: 0.5 means",
        "the human labels are unrelated to the images they are attached to (a wrong mapping).",
        "",
        "As shipped:",
        "",
        shipped.to_markdown(index=False),
        "",
        "Control, the same annotations shuffled within each class (a wrong mapping by construction):",
        "",
        control.to_markdown(index=False),
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
