"""Evaluation-protocol options: the validation split, the calibrated beta, the sequential normal
set (the paper's Algorithm 1 literally) and the best-epoch accuracy column."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from detdistill import data
from detdistill.best_epoch import BestEpochTracker
from detdistill.calibration import calibrated_betas
from detdistill.models import build_model
from detdistill.refine import refine_set
from detdistill.stages import anomalies as anomaly_stage
from detdistill.stages import evaluation
from detdistill.stages.classifiers import score_validation
from detdistill.train import EngineOptions, TrainConfig, save_model, train_classifiers

from conftest import markdown_table_rows

DIGITS = {"kind": "digits", "test_fraction": 0.2}


# --------------------------------------------------------------------------- validation split

def class_manifest(folder, names) -> str:
    """A manifest parquet whose class names (in label order) are `names`, for detect_anomalies."""
    path = folder / "classes.parquet"
    pd.DataFrame({"image_id": [f"x{i}" for i in range(len(names))], "label": range(len(names)), "class_name": names,
                  "split": "train", "source": ""}).to_parquet(path)
    return str(path)

def test_validation_split_is_stratified_seeded_and_carved_from_train_only():
    plain = data.build_manifest(DIGITS, seed=0)
    carved = data.build_manifest({**DIGITS, "validation_fraction": 0.1}, seed=0)
    assert set(carved.split) == {"train", "val", "test"}
    # the test split is untouched; validation images come from the train split only
    assert carved.loc[carved.split == "test", "image_id"].tolist() == plain.loc[plain.split == "test", "image_id"].tolist()
    plain_train = set(plain.loc[plain.split == "train", "image_id"])
    val = carved[carved.split == "val"]
    assert set(val.image_id) <= plain_train
    assert set(val.image_id) | set(carved.loc[carved.split == "train", "image_id"]) == plain_train
    # stratified: floor(10%) of every class's train images
    train_per_class = plain[plain.split == "train"].groupby("label").size()
    assert val.groupby("label").size().to_dict() == {y: math.floor(0.1 * n) for y, n in train_per_class.items()}
    # seeded: the same seed gives the same split, another seed another one
    assert data.build_manifest({**DIGITS, "validation_fraction": 0.1}, seed=0).equals(carved)
    other = data.build_manifest({**DIGITS, "validation_fraction": 0.1}, seed=1)
    assert set(other.loc[other.split == "val", "image_id"]) != set(val.image_id)


def test_a_class_draw_does_not_depend_on_the_other_classes():
    full = data.build_manifest({**DIGITS, "validation_fraction": 0.1}, seed=0)
    subset = data.build_manifest({**DIGITS, "validation_fraction": 0.1, "classes": ["3", "7"]}, seed=0)
    def validation_ids(manifest, name):
        return set(manifest.loc[(manifest.split == "val") & (manifest.class_name == name), "image_id"])

    for name in ["3", "7"]:
        assert validation_ids(subset, name) == validation_ids(full, name)


def test_noise_does_not_move_the_validation_split():
    """A noise experiment's arms hold out the same images as the clean one (drawn by true class),
    so they train on the same images; the held-out images keep their observed (noisy) labels."""
    clean = data.build_manifest({**DIGITS, "validation_fraction": 0.1}, seed=0)
    noisy = data.build_manifest({**DIGITS, "validation_fraction": 0.1, "label_noise": {"kind": "symmetric", "rate": 0.4}}, seed=0)
    for split in ["train", "val", "test"]:
        assert set(noisy.loc[noisy.split == split, "image_id"]) == set(clean.loc[clean.split == split, "image_id"]), split
    val = noisy[noisy.split == "val"]
    assert (val.label != val.clean_label).mean() == pytest.approx(0.4, abs=0.1)  # noisy, as the train split


def test_observed_class_left_without_train_images_is_named():
    # both true-class images of "dog" are held out (1 of 2 each); the only image labelled "cat" is one of them
    manifest = pd.DataFrame({
        "image_id": ["a", "b", "c", "d"], "label": [1, 1, 0, 1], "class_name": ["dog", "dog", "cat", "dog"],
        "clean_label": [0, 0, 1, 1], "clean_class_name": ["cat", "cat", "dog", "dog"],
        "split": "train", "source": ["a", "b", "c", "d"],
    })
    carved = None
    for seed in range(20):  # a seed that holds out image c (the one observed cat)
        try:
            data.carve_validation(manifest, 0.5, seed=seed)
        except data.DataError as error:
            carved = str(error)
            break
    assert carved is not None and "observed class(es) ['cat'] keep no train image" in carved


def test_validation_split_leaves_every_class_a_train_image():
    assert data.validation_count(50, 0) == 0 and data.validation_count(5, 0.1) == 1 and data.validation_count(50, 0.1) == 5
    manifest = pd.DataFrame({
        "image_id": ["a", "b", "c", "t1", "t2"], "label": [0, 0, 1, 0, 1], "class_name": ["cat", "cat", "dog", "cat", "dog"],
        "split": ["train", "train", "train", "test", "test"], "source": ["a", "b", "c", "t1", "t2"],
    })
    with pytest.raises(data.DataError, match=r"class 'dog' has 1 train image.*`source.validation_fraction` 0.5 leaves none"):
        data.carve_validation(manifest, 0.5, seed=0)
    assert data.carve_validation(manifest, 0, seed=0) is manifest


# --------------------------------------------------------------------------- calibrated beta
VALIDATION = pd.DataFrame({"label": [0, 0, 0, 0, 1, 1, 1], "p_target": [0.2, 0.4, 0.6, 0.8, 0.5, 0.7, 0.9]})


def test_calibrated_betas_are_quantiles_of_the_validation_scores():
    assert calibrated_betas(VALIDATION, "quantile_per_class", 0.5, [0, 1]) == pytest.approx({0: 0.5, 1: 0.7})
    glob = calibrated_betas(VALIDATION, "quantile_global", 0.5, [0, 1])
    assert glob == pytest.approx({0: 0.6, 1: 0.6})
    with pytest.raises(data.DataError, match=r"no images of classes \[2\].*validation_fraction"):
        calibrated_betas(VALIDATION, "quantile_per_class", 0.5, [0, 1, 2])


def test_calibration_reads_validation_scores_never_the_test_split(tmp_path):
    """The detector's test scores are poisoned (target softmax 0 everywhere): a beta read off them
    would be 0 and flag nothing for low confidence."""
    scores = pd.DataFrame({
        "image_id": [f"c{y}-p{p:03d}" for y in (0, 1) for p in range(3)], "label": [0, 0, 0, 1, 1, 1],
        "prototype_id": [0, 1, 2] * 2, "predicted": [0, 0, 0, 1, 1, 0],
        "p_target": [0.45, 0.55, 0.95, 0.65, 0.75, 0.3], "image_path": [str(tmp_path / f"{i}.png") for i in range(6)],
    })
    test = pd.DataFrame({"image_id": ["t0", "t1"], "label": [0, 1], "predicted": [0, 1], "p_target": [0.0, 0.0]})
    paths = {name: tmp_path / f"{name}.parquet" for name in ["scores", "test", "validation"]}
    scores.to_parquet(paths["scores"])
    test.to_parquet(paths["test"])
    VALIDATION.to_parquet(paths["validation"])
    out, report = tmp_path / "anomalies.parquet", tmp_path / "anomalies.md"
    anomaly_stage.detect_anomalies(scores_path=paths["scores"], detector_test_scores_path=paths["test"],
                               manifest_path=class_manifest(tmp_path, ["zero", "one"]), beta=0.9, out_parquet=out, out_report=report,
                               beta_mode="quantile_per_class", beta_quantile=0.5, validation_scores_path=paths["validation"])
    anomalies = pd.read_parquet(out)
    assert anomalies.groupby("label").beta.first().to_dict() == pytest.approx({0: 0.5, 1: 0.7})
    # 0.45 < 0.5 and 0.65 < 0.7 low confidence; c1-p002 predicted as another class
    assert anomalies.reason.tolist() == ["low_confidence", "normal", "normal", "low_confidence", "normal", "label_mismatch"]
    text = report.read_text()
    rows = {"|".join(row) for row in markdown_table_rows(text)}
    assert "calibrated beta (quantile_per_class) = 0.500 to 0.700 (per class)" in text
    # side by side: the paper's fixed beta 0.9 flags 5 of 6, the calibrated one 3 of 6
    assert "fixed (paper)|0.9|5 of 6 (83.3%)|2 of 2 (100.0%)" in rows
    assert "calibrated, quantile_per_class q = 0.5 (used)|0.500 to 0.700 (per class)|3 of 6 (50.0%)|2 of 2 (100.0%)" in rows
    assert "on 7 real validation images" in text


def test_fixed_beta_writes_its_beta_and_the_plain_report(tmp_path):
    scores = pd.DataFrame({"image_id": ["a", "b"], "label": [0, 1], "prototype_id": [0, 0], "predicted": [0, 1],
                           "p_target": [0.5, 0.95], "image_path": ["a.png", "b.png"]})
    scores.to_parquet(tmp_path / "s.parquet")
    scores.to_parquet(tmp_path / "t.parquet")
    anomaly_stage.detect_anomalies(scores_path=tmp_path / "s.parquet", detector_test_scores_path=tmp_path / "t.parquet",
                               manifest_path=class_manifest(tmp_path, ["x", "y"]), beta=0.9, out_parquet=tmp_path / "a.parquet",
                               out_report=tmp_path / "a.md")
    anomalies = pd.read_parquet(tmp_path / "a.parquet")
    assert (anomalies.beta == 0.9).all() and anomalies.defective.tolist() == [True, False]
    text = (tmp_path / "a.md").read_text()
    assert "beta = 0.9: 1 flagged" in text and "Fixed against calibrated" not in text


def test_score_validation_scores_the_validation_split_only(tmp_path):
    manifest = data.build_manifest({**DIGITS, "validation_fraction": 0.05, "classes": ["0", "1"]}, seed=0)
    manifest.to_parquet(tmp_path / "manifest.parquet")
    torch.manual_seed(0)
    save_model(build_model("convnet", 2, 8, 4), tmp_path / "detector.safetensors")
    score_validation(manifest_path=tmp_path / "manifest.parquet", source_cfg=DIGITS, image_size=8,
                     detector_path=tmp_path / "detector.safetensors", out_path=tmp_path / "val.parquet")
    scored = pd.read_parquet(tmp_path / "val.parquet")
    assert scored.image_id.tolist() == manifest.loc[manifest.split == "val", "image_id"].tolist()
    assert list(scored.columns) == ["image_id", "label", "predicted", "p_target"] and scored.p_target.between(0, 1).all()


# --------------------------------------------------------------------------- normal set
def _class_walk():
    """Class 0 in prototype order: A defective, N normal [1,0], B defective (rows shuffled)."""
    initial = pd.DataFrame({
        "image_id": ["B", "N", "A"], "label": [0, 0, 0], "prototype_id": [2, 1, 0],
        "image_path": ["b.png", "n.png", "a.png"], "predicted": [0, 0, 3], "p_target": [0.2, 0.99, 0.1],
        "feature": [np.array([1.0, 0.0])] * 3, "defective": [True, False, True],
    })
    s = 1 / np.sqrt(2)
    candidates = pd.DataFrame({
        "source_image_id": ["A", "A", "B", "B"], "candidate_index": [0, 1, 0, 1],
        "image_path": ["a0.png", "a1.png", "b0.png", "b1.png"], "seed": [10, 11, 20, 21], "predicted": [0, 0, 0, 0],
        "p_target": [0.95, 0.96, 0.95, 0.94],
        "feature": [np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([s, -s])],
    })
    return initial, candidates


def test_normal_set_all_starts_with_every_normal_image():
    # A: normal {N} -> a0 (cos 0) beats a1 (cos 1); a0 joins. B: normal {N, a0} -> b0 sums 1, b1 0 -> b1
    out = refine_set(*_class_walk(), method="conf_sim", beta=0.9, top_k=2, normal_set="all")
    assert out.image_path.tolist() == ["a0.png", "n.png", "b1.png"]


def test_normal_set_sequential_grows_while_walking():
    # A first: the normal set is empty, both sims 0, the tie goes to the higher p -> a1; a1 joins.
    # N joins when met. B: normal {a1, N} = {[1,0],[1,0]} -> b0 sums 0, b1 1.414 -> b0
    out = refine_set(*_class_walk(), method="conf_sim", beta=0.9, top_k=2, normal_set="sequential")
    assert out.image_path.tolist() == ["a1.png", "n.png", "b0.png"]
    assert out.sim_sum.iloc[0] == 0 and out.sim_sum.iloc[2] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown normal set"):
        refine_set(*_class_walk(), method="conf_sim", beta=0.9, top_k=2, normal_set="first")


def test_per_class_beta_is_the_acceptance_threshold():
    # beta 0.955 for class 0: only a1 (0.96) passes for A; B has none above it -> argmax-p fallback b0
    out = refine_set(*_class_walk(), method="conf_sim", beta={0: 0.955}, top_k=2)
    assert out.image_path.tolist() == ["a1.png", "n.png", "b0.png"]
    assert out.fallback.tolist() == [False, False, True]


# --------------------------------------------------------------------------- best epoch
class TinyBatchNormNet(nn.Module):
    """Batch norm, so a model left in eval mode after a measurement would train differently."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize("stack", ["off", "on"])
def test_measuring_during_training_leaves_the_training_unchanged(stack):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(24) % 3
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, flip=False)
    calls = []

    def trained(measure: bool):
        torch.manual_seed(1)
        models = [TinyBatchNormNet() for _ in range(2)]

        def hook(epoch, runs):
            # the models hold the epoch's weights in eval mode; a test pass draws no random numbers
            calls.append((epoch, runs, [models[i].training for i in runs]))
            models[runs[0]](torch.rand(2, 3, 8, 8))

        train_classifiers(models, [0, 1], images, labels, cfg, "cpu",
                          EngineOptions(stack=stack, on_evaluate=hook if measure else None, evaluate_at=lambda e: e % 2 == 0))
        return models

    measured, plain = trained(True), trained(False)
    # every 2nd epoch and the last; stacked runs are measured together, the others one by one
    expected = [(2, [0, 1]), (3, [0, 1])] if stack == "on" else [(2, [0]), (3, [0]), (2, [1]), (3, [1])]
    assert [(e, r) for e, r, _ in calls] == expected
    assert not any(any(modes) for _, _, modes in calls)
    for a, b in zip(measured, plain):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), name


def test_best_epoch_tracker_takes_the_earliest_best():
    accuracies = iter([0.5, 0.7, 0.7, 0.6])
    tracker = BestEpochTracker(1, lambda i: next(accuracies))
    for epoch in (1, 2, 3, 4):
        tracker(epoch, [0])
    assert tracker.best(0) == {"best_epoch_test_accuracy": 0.7, "best_epoch": 2}


def _aggregate(tmp_path, with_best):
    paths = []
    for method, accs in [("d4m", [0.5, 0.6]), ("conf_sim", [0.55, 0.7])]:
        rows = pd.DataFrame({"method": method, "model": "convnet", "seed": [0, 1], "train_images": 6, "epochs": 2, "test_accuracy": accs})
        if with_best:
            rows = rows.assign(best_epoch_test_accuracy=[a + 0.1 for a in accs], best_epoch=[1, 2])
        paths.append(tmp_path / f"{method}.parquet")
        rows.to_parquet(paths[-1])
    outs = [tmp_path / name for name in ("t.csv", "s.csv", "p.csv", "p.md")]
    evaluation.aggregate(eval_paths=paths, out_csv=outs[0], out_summary=outs[1], out_paired=outs[2], out_paired_md=outs[3], title="test")
    return pd.read_csv(outs[0]), pd.read_csv(outs[1])


def test_summary_reports_best_epoch_beside_the_final_epoch(tmp_path):
    table, summary = _aggregate(tmp_path, with_best=True)
    assert table.best_epoch_test_accuracy_pct.tolist() == pytest.approx([65, 80, 60, 70])
    # the final-epoch columns first, then the best epoch's, then the headline and published ones (detdistill.published)
    assert list(summary.columns)[:7] == ["model", "method", "mean", "std", "seeds",
                                         "best_epoch_test_selected_mean", "best_epoch_test_selected_std"]
    row = summary.set_index("method").loc["conf_sim"]
    assert row["mean"] == pytest.approx(62.5) and row.best_epoch_test_selected_mean == pytest.approx(72.5)
    assert row.headline_metric == "final_epoch" and row.headline_mean == row["mean"]  # the default headline
    _, plain = _aggregate(tmp_path, with_best=False)
    assert list(plain.columns)[:6] == ["model", "method", "mean", "std", "seeds", "headline_metric"]


def test_merging_per_seed_full_data_runs_checks_each_file_holds_its_seed(tmp_path):
    """merge_seed_runs keeps the seeds' order and stops, naming the file, on a table of another
    seed or of several runs (a stale or misplaced file would otherwise enter the table)."""
    paths = []
    for seed in (0, 1):
        paths.append(tmp_path / f"seed{seed}.parquet")
        pd.DataFrame([{"method": "full", "model": "convnet", "seed": seed, "test_accuracy": 0.5 + seed / 10}]).to_parquet(paths[-1])
    evaluation.merge_seed_runs(paths, seeds=[0, 1], out_path=tmp_path / "merged.parquet")
    assert pd.read_parquet(tmp_path / "merged.parquet").seed.tolist() == [0, 1]
    with pytest.raises(data.DataError, match=r"seed1\.parquet: expected the full-data run of seed 0"):
        evaluation.merge_seed_runs(paths[::-1], seeds=[0, 1], out_path=tmp_path / "bad.parquet")
    with pytest.raises(data.DataError, match="2 per-seed tables for the seeds"):
        evaluation.merge_seed_runs(paths, seeds=[0, 1, 2], out_path=tmp_path / "bad.parquet")
    pd.DataFrame([{"method": "full", "test_accuracy": 0.5}]).to_parquet(paths[1])
    with pytest.raises(data.DataError, match=r"seed1\.parquet: expected the full-data run of seed 1 alone, found seeds no seed column"):
        evaluation.merge_seed_runs(paths, seeds=[0, 1], out_path=tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_evaluate_reports_the_test_selected_best_epoch_beside_the_final_one(tmp_path):
    manifest = data.build_manifest({**DIGITS, "classes": ["0", "1", "2"]}, seed=0)
    manifest.to_parquet(tmp_path / "manifest.parquet")
    eval_cfg = {"seeds": [0, 1], "image_size": 8, "width": 4, "full_epochs": 3,
                "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "flip": False, "cutmix_alpha": 0}}
    runs = {}
    for best in (False, True):
        out = tmp_path / f"best{best}.parquet"
        evaluation.evaluate_full(manifest_path=tmp_path / "manifest.parquet", source_cfg=DIGITS, model_name="convnet",
                                 eval_cfg={**eval_cfg, "report_best_epoch": best, "best_epoch_every": 2}, out_path=out)
        runs[best] = pd.read_parquet(out)
    assert "best_epoch_test_accuracy" not in runs[False].columns  # option off: the table as before
    # the same training (the measured epochs differ only in the learning curve)
    curve = ["curve_epoch", "curve_test_accuracy"]
    assert runs[True].drop(columns=["best_epoch_test_accuracy", "best_epoch", *curve]).equals(runs[False].drop(columns=curve))
    # measured at epochs 2 and 3 (the last); the best is never below the final accuracy
    assert runs[True].best_epoch.isin([2, 3]).all()
    assert (runs[True].best_epoch_test_accuracy >= runs[True].test_accuracy).all()
