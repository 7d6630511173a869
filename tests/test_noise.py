"""Label noise on the training split (detdistill.data.label_noise): seeded, exact per-class rates, test rows
untouched, the truth kept beside the observed labels, label files matched by path."""

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detdistill.data import DataError
from detdistill.data.label_noise import CIFAR10_ASYMMETRIC_PAIRS, apply_label_noise, noise_summary

from conftest import REPO

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SHARED = REPO.parent / "shared" / "data"


def folder_manifest(root: Path, per_class: int = 50, test_per_class: int = 10, names=CIFAR10) -> pd.DataFrame:
    rows = []
    for split, n in [("train", per_class), ("test", test_per_class)]:
        for label, name in enumerate(names):
            for i in range(n):
                rows.append({"image_id": f"{split}/{name}/{i:04d}", "label": label, "class_name": name, "split": split,
                             "source": str(root / split / name / f"{i:04d}.jpg")})
    return pd.DataFrame(rows)


def test_no_noise_leaves_the_manifest_as_it_is(tmp_path):
    manifest = folder_manifest(tmp_path)
    assert apply_label_noise(manifest, None, 0) is manifest
    assert apply_label_noise(manifest, {"kind": "none"}, 0) is manifest


def test_symmetric_noise_flips_exactly_the_rate_per_class_to_other_classes(tmp_path):
    manifest = folder_manifest(tmp_path)
    noisy = apply_label_noise(manifest, {"kind": "symmetric", "rate": 0.4}, seed=3)
    train, test = noisy[noisy.split == "train"], noisy[noisy.split == "test"]
    assert (test.label == test.clean_label).all() and (test.class_name == test.clean_class_name).all()
    assert (noisy.clean_label == manifest.label).all()
    flipped = train[train.label != train.clean_label]
    assert (flipped.groupby("clean_label").size() == 20).all()  # round(0.4 * 50) in every class
    assert len(flipped.groupby("clean_label")) == 10
    assert len(flipped.label.unique()) == 10  # spread over the other classes, not one target
    assert (noisy.class_name == noisy.label.map(dict(enumerate(CIFAR10)))).all()  # names follow the observed label
    again = apply_label_noise(manifest, {"kind": "symmetric", "rate": 0.4}, seed=3)
    pd.testing.assert_frame_equal(noisy, again)
    other = apply_label_noise(manifest, {"kind": "symmetric", "rate": 0.4}, seed=4)
    assert not other.label.equals(noisy.label)
    summary = noise_summary(noisy)
    assert summary.wrong_pct.tolist() == [40.0] * 10


def test_asymmetric_noise_moves_only_the_standard_pairs(tmp_path):
    manifest = folder_manifest(tmp_path)
    noisy = apply_label_noise(manifest, {"kind": "asymmetric", "rate": 0.4}, seed=0)
    train = noisy[noisy.split == "train"]
    moved = train[train.label != train.clean_label]
    pairs = set(zip(moved.clean_class_name, moved.class_name))
    assert pairs == set(CIFAR10_ASYMMETRIC_PAIRS.items())  # cat -> dog and dog -> cat both
    assert (moved.groupby("clean_class_name").size() == 20).all()
    assert set(moved.clean_class_name) == set(CIFAR10_ASYMMETRIC_PAIRS)
    with pytest.raises(DataError, match=r"label_noise\.pairs"):
        apply_label_noise(folder_manifest(tmp_path, names=["a", "b"]), {"kind": "asymmetric", "rate": 0.2}, 0)


def test_label_file_is_matched_by_path_not_by_row_order(tmp_path):
    manifest = folder_manifest(tmp_path, per_class=3, names=["n01", "n02"])
    train = manifest[manifest.split == "train"]
    relative = [Path(s).relative_to(tmp_path).as_posix() for s in train.source]
    wrong = {"train/n01/0001.jpg": "n02", "train/n02/0002.jpg": "n01"}
    table = pd.DataFrame({"path": relative, "noisy": [wrong.get(p, p.split("/")[1]) for p in relative]})
    table = table.iloc[::-1]  # another row order than the manifest's
    table.to_csv(tmp_path / "labels.csv.gz", index=False)
    noisy = apply_label_noise(manifest, {"kind": "file", "file": str(tmp_path / "labels.csv.gz"), "column": "noisy"}, 0, tmp_path)
    changed = noisy[noisy.label != noisy.clean_label]
    assert sorted(changed.image_id) == ["train/n01/0001", "train/n02/0002"]
    assert changed.set_index("image_id").class_name.to_dict() == {"train/n01/0001": "n02", "train/n02/0002": "n01"}

    table.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match=r"short.csv has no row for 1 of 6 training images"):
        apply_label_noise(manifest, {"kind": "file", "file": str(tmp_path / "short.csv"), "column": "noisy"}, 0, tmp_path)
    with pytest.raises(DataError, match=r"label_noise\.column: worst"):
        apply_label_noise(manifest, {"kind": "file", "file": str(tmp_path / "labels.csv.gz"), "column": "worst"}, 0, tmp_path)
    table.assign(noisy="n99").to_csv(tmp_path / "alien.csv", index=False)
    with pytest.raises(DataError, match="n99"):
        apply_label_noise(manifest, {"kind": "file", "file": str(tmp_path / "alien.csv"), "column": "noisy"}, 0, tmp_path)


def test_label_file_rows_are_torchvision_cifar10_indices(tmp_path):
    """torchvision's CIFAR-10 files have no paths: row i of CIFAR-10N is training image i."""
    manifest = pd.DataFrame({"image_id": ["train/00000", "train/00001", "train/00002", "test/00000"],
                             "label": [6, 9, 9, 3], "class_name": ["frog", "truck", "truck", "cat"],
                             "split": ["train", "train", "train", "test"],
                             "source": [f"torchvision-cifar10:train/{i}" for i in range(3)] + ["torchvision-cifar10:test/0"]})
    manifest = pd.concat([manifest, pd.DataFrame({"image_id": [f"x{y}" for y in range(10)], "label": range(10), "class_name": CIFAR10,
                                                  "split": "test", "source": "torchvision-cifar10:test/1"})], ignore_index=True)
    pd.DataFrame({"path": ["train/frog/0000.jpg", "train/truck/0000.jpg", "train/truck/0001.jpg"],
                  "worst": ["deer", "truck", "airplane"]}).to_csv(tmp_path / "n.csv", index=False)
    noisy = apply_label_noise(manifest, {"kind": "file", "file": str(tmp_path / "n.csv"), "column": "worst"}, 0)
    assert noisy.class_name.tolist()[:4] == ["deer", "truck", "airplane", "cat"]


@pytest.mark.skipif(not (SHARED / "cifar10n_labels.csv.gz").exists(), reason="needs ../shared/data (CIFAR-10N labels)")
def test_cifar10n_paths_are_exactly_the_training_jpegs():
    """Every `path` of the shipped CIFAR-10N file is one training JPEG of the CIFAR-10 archive, and
    each class's files are all there: the file can be matched to a CIFAR-10 folder by path. (That
    the order within a class is right is bench/verify_cifar10n.py's finding.)"""
    table = pd.read_csv(SHARED / "cifar10n_labels.csv.gz")
    with tarfile.open(SHARED / "cifar10-jpeg.tar.gz") as tar:
        train = {n.removeprefix("cifar10/") for n in tar.getnames() if n.startswith("cifar10/train/") and n.endswith(".jpg")}
    assert len(table) == 50_000 and set(table.path) == train
    assert (table.path.str.split("/").str[1] == table.clean).all()
    wrong = {c: float((table[c] != table.clean).mean()) for c in ["aggregate", "random1", "worst"]}
    assert np.allclose([wrong["aggregate"], wrong["random1"], wrong["worst"]], [0.0903, 0.1723, 0.4021], atol=0.002), wrong


def test_workflow_manifest_carries_the_noise(tmp_path):
    """`source.label_noise` in a config reaches the manifest the workflow writes: observed labels
    in `label`, the truth in `clean_label`, the same draw as the library's."""
    import yaml

    from conftest import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path / "wf")
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["source"]["label_noise"] = {"kind": "symmetric", "rate": 0.25}
    (workdir / "noisy.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "results/tiny/data/manifest.parquet", "--configfile", "noisy.yaml")
    manifest = pd.read_parquet(workdir / "results" / "tiny" / "data" / "manifest.parquet")
    train = manifest[manifest.split == "train"]
    wrong = (train.label != train.clean_label).groupby(train.clean_label).mean()
    assert np.allclose(wrong, 0.25, atol=0.01), wrong
    test = manifest[manifest.split == "test"]
    assert (test.label == test.clean_label).all()
