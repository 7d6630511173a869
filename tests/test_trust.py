"""The trust-aware split (detdistill.trust) through Snakemake on the tiny digits config
with 40% symmetric label noise: per-sample table, rounds report, the trusted manifest, and the
detector and generator reading it while the judge keeps the true labels."""

import re

import pandas as pd
import pytest
import yaml

from conftest import copy_workflow, markdown_table_rows, snakemake

RATE = 0.4


@pytest.fixture(scope="module")
def noisy_trust(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("trust"))
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    tiny = config["datasets"]["tiny"]
    tiny["source"]["label_noise"] = {"kind": "symmetric", "rate": RATE}
    tiny["trust"] = {"enabled": True, "rounds": 2, "warmup_epochs": 6, "epochs_per_round": 2}
    (workdir / "trust.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "results/tiny/trust/rounds.md", "--configfile", "trust.yaml")
    return workdir


def test_trust_tables_and_manifest(noisy_trust):
    out = noisy_trust / "results" / "tiny"
    manifest = pd.read_parquet(out / "data" / "manifest.parquet")
    samples = pd.read_parquet(out / "trust" / "samples.parquet")
    trusted = pd.read_parquet(out / "trust" / "manifest.parquet")
    train = manifest[manifest.split == "train"]
    assert samples.image_id.tolist() == train.image_id.tolist()
    assert (samples.observed_label.to_numpy() == train.label.to_numpy()).all()
    assert (samples.clean_label.to_numpy() == train.clean_label.to_numpy()).all()
    assert samples.trust_probability.between(0, 1).all()
    # recalibrated rows carry a label other than their observed one and count as trusted
    moved = samples[samples.recalibrated]
    assert (moved.label != moved.observed_label).all() and moved.trusted.all()
    assert (samples.loc[~samples.recalibrated, "label"] == samples.loc[~samples.recalibrated, "observed_label"]).all()
    assert ((samples.joined_round >= 1) == samples.trusted).all()
    # the trusted manifest: exactly the trusted train rows with their labels, every test row as it was
    kept = trusted[trusted.split == "train"]
    assert set(kept.image_id) == set(samples.image_id[samples.trusted])
    assert kept.set_index("image_id").label.to_dict() == samples[samples.trusted].set_index("image_id").label.to_dict()
    pd.testing.assert_frame_equal(trusted[trusted.split == "test"].reset_index(drop=True),
                                  manifest[manifest.split == "test"].reset_index(drop=True))
    # it filters: the trusted set's labels are right more often than the noisy split's (60%)
    right_before = float((train.label == train.clean_label).mean())
    right_after = float((samples.label[samples.trusted] == samples.clean_label[samples.trusted]).mean())
    assert right_before == pytest.approx(1 - RATE, abs=0.01)
    assert right_after > right_before + 0.1, (right_before, right_after)


def test_rounds_report_measures_against_the_truth(noisy_trust):
    report = (noisy_trust / "results" / "tiny" / "trust" / "rounds.md").read_text()
    samples = pd.read_parquet(noisy_trust / "results" / "tiny" / "trust" / "samples.parquet")
    assert "trusted_precision_pct" in report and "recalibration_accuracy_pct" in report
    last = [line for line in report.splitlines() if re.match(r"\|\s+2\s+\|", line)]
    assert last, report
    cells = [c.strip() for c in last[0].strip("|").split("|")]
    assert int(cells[1]) == int(samples.trusted.sum())
    precision = 100 * float((samples.label == samples.clean_label)[samples.trusted].mean())
    assert float(cells[4]) == pytest.approx(precision, abs=0.01)
    # recall: rightly labelled images still trained on with their right label (recalibrating a right
    # label away loses it)
    was_right = samples.observed_label == samples.clean_label
    recall = 100 * float((samples.trusted & (samples.label == samples.clean_label))[was_right].mean())
    assert float(cells[5]) == pytest.approx(recall, abs=0.01)
    # per class after the last round: the classes partition the train split and the trusted set
    section = report[report.index("## Per class, after the last round"):]
    table = pd.DataFrame(markdown_table_rows(section)[1:], columns=markdown_table_rows(section)[0])
    assert table["class"].tolist() == ["0", "1", "2"]  # tiny.yaml's digits, in label order
    assert table.observed.astype(int).sum() == len(samples) and table.trusted.astype(int).sum() == samples.trusted.sum()
    assert table.recalibrated_in.astype(int).sum() == table.recalibrated_out.astype(int).sum() == samples.recalibrated.sum()
    for label, row in table.iterrows():  # labels are the row order
        kept = samples.trusted & (samples.label == label)
        right = 100 * float((samples.label == samples.clean_label)[kept].mean())
        assert float(row.trusted_precision_pct) == pytest.approx(right, abs=0.01)
        observed = samples.observed_label == label
        assert float(row.observed_right_pct) == pytest.approx(100 * float((samples.clean_label == label)[observed].mean()), abs=0.01)
    # the per-class recalls, weighted by each class's rightly labelled images, give the global one:
    # one definition in both tables
    right_per_class = table.observed.astype(int) * table.observed_right_pct.astype(float) / 100
    weighted = (right_per_class * table.trusted_recall_pct.astype(float)).sum() / right_per_class.sum()
    assert weighted == pytest.approx(float(cells[5]), abs=0.05)


def test_detector_and_generator_train_on_the_trusted_manifest_the_judge_not(noisy_trust):
    plan = snakemake(noisy_trust, "results/tiny_ipc2.csv", "--configfile", "trust.yaml", "-n", "--printshellcmds").stdout
    jobs = re.split(r"\n(?=(?:local)?rule )", plan)
    inputs = {}
    for job in jobs:
        rule = re.match(r"(?:local)?rule (\w+):", job)
        wildcards = re.search(r"wildcards: (.*)", job)
        found = re.search(r"input: (.*)", job)
        if rule and found:
            inputs[(rule.group(1), wildcards.group(1) if wildcards else "")] = found.group(1)
    detector = next(v for (r, w), v in inputs.items() if r == "train_classifier" and "role=detector" in w)
    judge = next(v for (r, w), v in inputs.items() if r == "train_classifier" and "role=judge" in w)
    generator = next(v for (r, _), v in inputs.items() if r == "prepare_generator")
    assert "results/tiny/trust/manifest.parquet" in detector and "results/tiny/trust/manifest.parquet" in generator
    assert "results/tiny/data/manifest.parquet" in judge and "trust" not in judge


def test_inner_loop_agreeing_with_the_own_label_confirms_and_does_not_recalibrate(monkeypatch):
    """An untrusted image the inner loop finds reliable *with its own label* joins the trusted set for
    good as confirmed, label unchanged, and is not counted as recalibrated; one it finds reliable
    with another class is recalibrated to it. (The reports call recalibration a change of class.)"""
    import numpy as np
    import torch

    from detdistill import trust
    from detdistill.models import build_model
    from detdistill.train import TrainConfig

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (120, 3, 8, 8), dtype=np.uint8))
    observed = np.repeat(np.arange(3), 40)
    calls = []

    def agree_with_half(features, probs, labels, trusted, confidence, num_classes):
        result = np.full(len(labels), -1, dtype=np.int64)
        untrusted = np.flatnonzero(~trusted)
        own, other = untrusted[::2], untrusted[1::2]
        result[own], result[other] = labels[own], (labels[other] + 1) % num_classes
        calls.append((own, other))
        return result

    monkeypatch.setattr(trust, "recalibrate", agree_with_half)
    cfg = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=0.003, crop_size=8, crop_scale=(0.8, 1.0),
                      cutmix_alpha=0.0, flip=False, seed=0)
    trust_cfg = trust.TrustConfig(rounds=1, warmup_epochs=1, epochs_per_round=1, trust_threshold=0.5,
                                  recalibration_confidence=0.9, min_class_samples=4, consistency_weight=0.0)
    samples, rounds = trust.split_by_trust(build_model("convnet", 3, 8, 4), images, observed, observed, 3, cfg, trust_cfg,
                                           "cpu", seed=0)
    own, other = calls[0]
    assert len(own) and len(other)
    confirmed = samples.iloc[own]
    assert confirmed.confirmed.all() and confirmed.trusted.all() and not confirmed.recalibrated.any()
    assert (confirmed.label == confirmed.observed_label).all()
    moved = samples.iloc[other]
    assert moved.recalibrated.all() and not moved.confirmed.any() and (moved.label != moved.observed_label).all()
    assert int(rounds.recalibrated.iloc[0]) == len(other) and int(rounds.confirmed.iloc[0]) == len(own)
    assert samples.confirmed.sum() == len(own) and samples.recalibrated.sum() == len(other)
