"""The protocol options through Snakemake on the tiny config: a validation split, a per-class
calibrated beta and the sequential normal set, up to the refined set; assertions on the artifacts.
(The best-epoch column is checked on `stages.evaluate` directly in test_protocol.py: an evaluation
job would add a job to this run's critical path.)

The run takes 11 jobs (230 s on the shared 2-core machine at load 7-8): it is marked `long`
(`pytest -m long`) so the default suite stays within its time budget; the dry-run check is not."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import assert_stops_with, copy_workflow, markdown_table_rows, snakemake

QUANTILE = 0.5
FIXED_BETA = 0.97  # tiny.yaml's refinement.beta
TARGETS = ["results/tiny/ipc2/anomalies.md", "results/tiny/ipc2/sets/conf_sim.parquet"]


def _config(workdir, name, **sections):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    for section, changes in sections.items():
        config["datasets"]["tiny"][section].update(changes)
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("calibrated"))
    configfile = _config(
        workdir, "calibrated.yaml",
        source={"validation_fraction": 0.2},
        refinement={"beta_mode": "quantile_per_class", "beta_quantile": QUANTILE, "normal_set": "sequential"},
    )
    snakemake(workdir, *TARGETS, "--configfile", configfile)
    return workdir / "results" / "tiny"


@pytest.mark.long
def test_validation_split_is_held_out_of_training(calibrated_run):
    manifest = pd.read_parquet(calibrated_run / "data" / "manifest.parquet")
    val, train = manifest[manifest.split == "val"], manifest[manifest.split == "train"]
    assert not set(val.image_id) & set(manifest.loc[manifest.split == "test", "image_id"])
    assert val.groupby("label").size().tolist() == [int(0.2 * (n + v)) for n, v in
                                                    zip(train.groupby("label").size(), val.groupby("label").size())]
    metrics = json.loads((calibrated_run / "classifiers" / "detector" / "metrics.json").read_text())
    assert metrics["train_images"] == len(train)
    assert set(pd.read_parquet(calibrated_run / "latents.parquet").image_id) == set(train.image_id)
    scores = pd.read_parquet(calibrated_run / "classifiers" / "detector" / "validation_scores.parquet")
    assert scores.image_id.tolist() == val.image_id.tolist()


@pytest.mark.long
def test_anomalies_use_the_calibrated_per_class_beta(calibrated_run):
    scores = pd.read_parquet(calibrated_run / "classifiers" / "detector" / "validation_scores.parquet")
    anomalies = pd.read_parquet(calibrated_run / "ipc2" / "anomalies.parquet")
    expected = {y: np.quantile(g.p_target.to_numpy(np.float64), QUANTILE) for y, g in scores.groupby("label")}
    assert anomalies.groupby("label").beta.first().to_dict() == pytest.approx(expected)
    assert (anomalies.defective == ((anomalies.predicted != anomalies.label) | (anomalies.p_target < anomalies.beta))).all()
    report = (calibrated_run / "ipc2" / "anomalies.md").read_text()
    fixed = int(((anomalies.predicted != anomalies.label) | (anomalies.p_target < FIXED_BETA)).sum())
    rows = markdown_table_rows(report)
    fixed_row = next(row for row in rows if row[0] == "fixed (paper)")
    assert fixed_row[1] == str(FIXED_BETA) and fixed_row[2].startswith(f"{fixed} of {len(anomalies)} ")
    calibrated = next(row for row in rows if row[0] == "calibrated, quantile_per_class q = 0.5 (used)")
    assert calibrated[2].startswith(f"{int(anomalies.defective.sum())} of {len(anomalies)} ")
    assert f"on {len(scores)} real validation images" in report


@pytest.mark.long
def test_refinement_accepts_candidates_above_the_calibrated_beta(calibrated_run):
    anomalies = pd.read_parquet(calibrated_run / "ipc2" / "anomalies.parquet")
    refined = pd.read_parquet(calibrated_run / "ipc2" / "sets" / "conf_sim.parquet")
    beta = refined.label.map(anomalies.groupby("label").beta.first())
    chosen = refined[(refined.origin == "candidate") & ~refined.fallback]
    assert (chosen.p_target > beta[chosen.index]).all()
    assert set(refined.loc[refined.origin == "candidate", "replaced_image_id"]) == set(anomalies.loc[anomalies.defective, "image_id"])


def test_calibrated_beta_without_a_validation_split_stops_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    configfile = _config(workdir, "no_validation.yaml", refinement={"beta_mode": "quantile_global"})
    proc = snakemake(workdir, "results/tiny/ipc2/anomalies.md", "-n", "--configfile", configfile, check=False)
    assert proc.returncode != 0
    assert "error: `datasets.tiny.refinement.beta_mode` quantile_global reads beta off validation images" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_temperature_mode_needs_a_validation_split_and_gives_only_the_detector_its_fit(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    configfile = _config(workdir, "temperature_no_validation.yaml", refinement={"beta_mode": "temperature"})
    proc = snakemake(workdir, "results/tiny/ipc2/anomalies.md", "-n", "--configfile", configfile, check=False)
    assert_stops_with(proc, "error: `datasets.tiny.refinement.beta_mode` temperature fits the detector's temperature on validation images")
    configfile = _config(workdir, "temperature.yaml", source={"validation_fraction": 0.2}, refinement={"beta_mode": "temperature"})
    proc = snakemake(workdir, "results/tiny/ipc2/anomalies.md", "-n", "-p", "--configfile", configfile)
    assert "rule score_validation:" in proc.stdout


@pytest.mark.long
def test_temperature_mode_scales_the_detector_not_the_judge(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    configfile = _config(workdir, "temperature.yaml", source={"validation_fraction": 0.2}, refinement={"beta_mode": "temperature"})
    snakemake(workdir, "results/tiny/ipc2/anomalies.md", "results/tiny/classifiers/judge/metrics.json", "--configfile", configfile)
    run = workdir / "results" / "tiny"
    detector = json.loads((run / "classifiers" / "detector" / "metrics.json").read_text())
    judge = json.loads((run / "classifiers" / "judge" / "metrics.json").read_text())
    temperature = detector["temperature_scaling"]["temperature"]
    assert "temperature_scaling" not in judge and "temperature_scaling" not in judge["train_config"]
    anomalies = pd.read_parquet(run / "ipc2" / "anomalies.parquet")
    assert (anomalies.temperature == temperature).all() and (anomalies.beta == FIXED_BETA).all()
    assert (anomalies.defective == ((anomalies.predicted != anomalies.label) | (anomalies.p_target < FIXED_BETA))).all()
    assert f"T = {temperature:.3f} (used)" in (run / "ipc2" / "anomalies.md").read_text()
