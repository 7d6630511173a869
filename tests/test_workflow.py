"""The real workflow through Snakemake on tiny digits data; assertions on the artifacts."""

import json
import re

import pandas as pd
import pytest
import yaml
from PIL import Image

from detdistill.data import build_manifest

from conftest import copy_workflow, planned_jobs, snakemake

IPC = 2
CLASSES = 3
BASELINES = ["random", "herding", "kcenter"]
METHODS = [*BASELINES, "d4m", "conf", "sim", "conf_sim"]
MODELS = ["convnet", "resnetap10", "resnet18"]
SEEDS = [0, 1]


def results(workdir):
    return workdir / "results" / "tiny"


def test_manifest_and_split(tiny_run):
    manifest = pd.read_parquet(results(tiny_run) / "data" / "manifest.parquet")
    assert set(manifest.split) == {"train", "test"}
    assert sorted(manifest.label.unique()) == [0, 1, 2]
    assert sorted(manifest.class_name.unique()) == ["0", "1", "2"]
    # the same config gives the same split: the library, called again in this process, writes the same manifest
    source = yaml.safe_load((tiny_run / "tiny.yaml").read_text())["datasets"]["tiny"]["source"]
    again = build_manifest(source, seed=0)
    pd.testing.assert_frame_equal(manifest.reset_index(drop=True), again.reset_index(drop=True), check_dtype=False)
    # stratified: every class holds out its share of test images (test_fraction 0.2)
    test_share = manifest.groupby("label").split.apply(lambda s: (s == "test").mean())
    assert test_share.between(0.18, 0.22).all(), test_share


def test_test_split_never_reaches_latents_prototypes_or_classifiers(tiny_run):
    manifest = pd.read_parquet(results(tiny_run) / "data" / "manifest.parquet")
    train_ids = set(manifest.loc[manifest.split == "train", "image_id"])
    latents = pd.read_parquet(results(tiny_run) / "latents.parquet")
    assert set(latents.image_id) == train_ids
    for role in ["detector", "judge"]:
        metrics = json.loads((results(tiny_run) / "classifiers" / role / "metrics.json").read_text())
        assert metrics["train_images"] == len(train_ids)
        assert metrics["test_images"] == len(manifest) - len(train_ids)
        # the reported accuracy is the one of its own test predictions, on every test image
        scores = pd.read_parquet(results(tiny_run) / "classifiers" / role / "test_scores.parquet")
        assert sorted(scores.image_id) == sorted(manifest.loc[manifest.split == "test", "image_id"])
        assert metrics["test_accuracy"] == pytest.approx(float((scores.predicted == scores.label).mean()))
    generator = json.loads((results(tiny_run) / "generator" / "generator.json").read_text())
    assert generator["backend"] == "embedded"


def test_prototypes_exactly_ipc_per_class(tiny_run):
    prototypes = pd.read_parquet(results(tiny_run) / "ipc2" / "prototypes.parquet")
    assert prototypes.groupby("label").size().tolist() == [IPC] * CLASSES
    assert prototypes.cluster_size.sum() == len(pd.read_parquet(results(tiny_run) / "latents.parquet"))


def test_initial_set_images_and_manifest(tiny_run):
    # classes_per_job 0: every class in one folder, images named by image id, paths to the final folder
    folder = results(tiny_run) / "ipc2" / "initial" / "part0"
    manifest = pd.read_parquet(folder / "manifest.parquet")
    assert [p.name for p in (results(tiny_run) / "ipc2" / "initial").iterdir()] == ["part0"]
    assert manifest.label.tolist() == sorted(list(range(CLASSES)) * IPC)
    assert manifest.groupby("label").seed.nunique().tolist() == [IPC] * CLASSES
    assert manifest.seed.nunique() == IPC * CLASSES
    for image_id, path in zip(manifest.image_id, manifest.image_path):
        assert path == f"results/tiny/ipc2/initial/part0/{image_id}.png"
        with Image.open(tiny_run / path) as image:
            assert image.size == (32, 32)


def test_anomaly_report(tiny_run):
    anomalies = pd.read_parquet(results(tiny_run) / "ipc2" / "anomalies.parquet")
    assert len(anomalies) == IPC * CLASSES
    assert set(anomalies.reason) <= {"label_mismatch", "low_confidence", "normal"}
    beta = 0.97
    expected = (anomalies.predicted != anomalies.label) | (anomalies.p_target < beta)
    assert (anomalies.defective == expected).all()
    assert ((anomalies.reason == "label_mismatch") == (anomalies.predicted != anomalies.label)).all()
    assert anomalies.defective.any(), "the tiny config is meant to flag images"
    report = (results(tiny_run) / "ipc2" / "anomalies.md").read_text()
    assert f"{int(anomalies.defective.sum())} flagged" in report


def test_candidates_for_every_defective_image(tiny_run):
    anomalies = pd.read_parquet(results(tiny_run) / "ipc2" / "anomalies.parquet")
    candidates = pd.read_parquet(results(tiny_run) / "ipc2" / "candidates" / "part0" / "manifest.parquet")
    assert list(candidates.columns) == ["source_image_id", "label", "prototype_id", "candidate_index", "seed", "image_path",
                                        "predicted", "p_target", "feature"]
    assert all((tiny_run / p).is_file() and "/candidates/part0/" in p for p in candidates.image_path)
    assert set(candidates.source_image_id) == set(anomalies.loc[anomalies.defective, "image_id"])
    assert (candidates.groupby("source_image_id").size() == 3).all()
    assert candidates.p_target.between(0, 1).all()
    assert all(len(f) == len(candidates.feature.iloc[0]) for f in candidates.feature)


def test_sets_keep_ipc_per_class(tiny_run):
    anomalies = pd.read_parquet(results(tiny_run) / "ipc2" / "anomalies.parquet")
    for method in METHODS:
        subset = pd.read_parquet(results(tiny_run) / "ipc2" / "sets" / f"{method}.parquet")
        assert subset.groupby("label").size().tolist() == [IPC] * CLASSES, method
    d4m = pd.read_parquet(results(tiny_run) / "ipc2" / "sets" / "d4m.parquet")
    assert (d4m.origin == "initial").all()
    ours = pd.read_parquet(results(tiny_run) / "ipc2" / "sets" / "conf_sim.parquet")
    replaced = set(ours.loc[ours.origin == "candidate", "replaced_image_id"])
    assert replaced == set(anomalies.loc[anomalies.defective, "image_id"])
    manifest = pd.read_parquet(results(tiny_run) / "data" / "manifest.parquet")
    train_ids = set(manifest.loc[manifest.split == "train", "image_id"])
    for method in BASELINES:
        real_subset = pd.read_parquet(results(tiny_run) / "ipc2" / "sets" / f"{method}.parquet")
        assert (real_subset.split == "train").all() and set(real_subset.image_id) <= train_ids, method
        assert (real_subset.kind == "real").all() and (real_subset.method == method).all()
    features = pd.read_parquet(results(tiny_run) / "classifiers" / "detector" / "train_features.parquet")
    assert set(features.image_id) == train_ids
    for method in ["d4m", "conf", "sim", "conf_sim"]:
        with Image.open(results(tiny_run) / "ipc2" / "sets" / f"{method}.png") as sheet:
            assert sheet.width > 32 * IPC and sheet.height > 32 * CLASSES


def test_accuracy_table_and_summary(tiny_run):
    table = pd.read_csv(tiny_run / "results" / "tiny_ipc2.csv")
    assert len(table) == (len(METHODS) + 1) * len(MODELS) * len(SEEDS)
    assert set(table.method) == set(METHODS) | {"full"}
    assert set(table.model) == set(MODELS)
    # accuracies are counts over the real test split: multiples of 1 / (test images)
    manifest = pd.read_parquet(results(tiny_run) / "data" / "manifest.parquet")
    correct = table.test_accuracy * int((manifest.split == "test").sum())
    assert (correct - correct.round()).abs().max() < 1e-4  # float32 means
    assert table.test_accuracy_pct.to_numpy() == pytest.approx(100 * table.test_accuracy.to_numpy())
    summary = pd.read_csv(tiny_run / "results" / "tiny_ipc2_summary.csv")
    assert len(summary) == (len(METHODS) + 1) * len(MODELS)
    assert (summary.seeds == len(SEEDS)).all()
    expected = table.groupby(["model", "method"]).test_accuracy_pct.agg(["mean", "std"]).round(2)
    got = summary.set_index(["model", "method"])[["mean", "std"]]
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_exact=False, atol=0.006)
    # the default headline is the final epoch; digits has no published counterpart (detdistill.published)
    assert (summary.headline_metric == "final_epoch").all()
    assert summary.headline_mean.tolist() == summary["mean"].tolist()
    assert summary.vs_published.str.startswith("no published counterpart: digits: not a dataset of the paper").all()
    paired = pd.read_csv(tiny_run / "results" / "tiny_ipc2_paired.csv")
    assert (paired.metric == "final_epoch").all()
    ours = paired[(paired.method == "conf_sim") & (paired.model == "convnet")]
    assert sorted(ours.baseline) == sorted(m for m in METHODS if m != "conf_sim")
    assert set(paired[paired.method != "conf_sim"].baseline) == {"d4m"}
    assert len(paired) == len(MODELS) * (len(METHODS) - 1 + len(METHODS) - 2)
    assert (paired.seeds == len(SEEDS)).all() and (paired.ci_low <= paired.mean_diff).all()
    row = paired[(paired.model == "convnet") & (paired.method == "conf_sim") & (paired.baseline == "d4m")].iloc[0]
    runs = table[table.model == "convnet"].pivot(index="seed", columns="method", values="test_accuracy_pct")
    assert row.mean_diff == pytest.approx((runs.conf_sim - runs.d4m).mean(), abs=0.006)
    assert "variance of building" in (tiny_run / "results" / "tiny_ipc2_paired.md").read_text()
    consistency = pd.read_csv(tiny_run / "results" / "tiny_ipc2_consistency.csv")
    assert sorted(consistency.method) == sorted(["d4m", "conf", "sim", "conf_sim"])


def test_learning_curves_of_every_run(tiny_run):
    """The dataset's final target builds the learning curves: one row per run and epoch (tiny.yaml:
    2 epochs on a set, 1 on the full data; no best epoch, so the accuracy at the last epoch only,
    the per-run table's), and the figure."""
    curves = pd.read_csv(tiny_run / "results" / "tiny_ipc2_learning_curves.csv")
    table = pd.read_csv(tiny_run / "results" / "tiny_ipc2.csv")
    assert len(curves) == (len(METHODS) * 2 + 1) * len(MODELS) * len(SEEDS)
    assert curves.curve_recorded.all() and curves.train_loss.notna().all()
    final = curves.dropna(subset=["test_accuracy"])
    assert final.epoch.tolist() == [1 if m == "full" else 2 for m in final.method]
    merged = final.merge(table, on=["model", "method", "seed"], suffixes=("", "_table"), validate="one_to_one")
    assert len(merged) == len(table) and (merged.test_accuracy == merged.test_accuracy_table).all()
    with Image.open(results(tiny_run) / "ipc2" / "figures" / "learning_curves.png") as picture:
        assert picture.width > 400 and picture.height > 300 * len(METHODS) / 2, picture.size


def test_gradcam_models_are_the_evaluations_first_seed(tiny_run):
    """The Grad-CAM picture explains the models the accuracy table scores: each compared set's
    model is the evaluation's run of the first seed (same accuracy on the whole test split), and
    the shown images are the first test images of every class, each with its own softmax."""
    shown = pd.read_parquet(results(tiny_run) / "ipc2" / "figures" / "gradcam.parquet")
    assert list(shown.method.unique()) == ["d4m", "conf_sim"] and set(shown.model) == {"convnet"}
    manifest = pd.read_parquet(results(tiny_run) / "data" / "manifest.parquet")
    first = manifest[manifest.split == "test"].groupby("label").head(2).sort_values("label", kind="stable")
    for method, rows in shown.groupby("method", sort=False):
        assert rows.image_id.tolist() == first.image_id.tolist() and rows.label.tolist() == first.label.tolist()
        assert rows.p_label.between(0, 1).all()
        evaluated = pd.read_parquet(results(tiny_run) / "ipc2" / "eval" / method / "convnet.parquet")
        assert rows.test_accuracy.iloc[0] == evaluated.loc[evaluated.seed == SEEDS[0], "test_accuracy"].item()
    with Image.open(results(tiny_run) / "ipc2" / "figures" / "gradcam.png") as picture:
        assert picture.width >= 6 * 64 and picture.height >= 3 * 64  # 6 images x (image, d4m, conf_sim)


def test_logs_and_benchmarks(tiny_run):
    assert any((tiny_run / "logs" / "prepare_generator").iterdir())
    assert (tiny_run / "benchmarks" / "train_classifier" / "tiny_detector.tsv").exists()


def _with_refinement(workdir, **changes):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["refinement"].update(changes)
    path = workdir / "changed.yaml"
    path.write_text(yaml.safe_dump(config))
    return "changed.yaml"


UPSTREAM = {"prepare_data", "prepare_generator", "encode_latents", "compute_prototypes", "synthesize_initial", "train_classifier", "score_initial", "evaluate_full", "select_random_subset",
            "score_train_features", "select_feature_subset"}


def test_nothing_to_do_after_a_run(tiny_run):
    out = snakemake(tiny_run, "results/tiny_ipc2.csv", "-n", "--configfile", "tiny.yaml").stdout
    assert "Nothing to be done" in out


def test_reordering_config_keys_reruns_nothing(tiny_run):
    configfile = _with_refinement(tiny_run)  # same values, keys written in sorted order
    out = snakemake(tiny_run, "results/tiny_ipc2.csv", "-n", "--configfile", configfile).stdout
    assert "Nothing to be done" in out


def test_changing_beta_reruns_only_downstream_jobs(tiny_run):
    jobs = planned_jobs(tiny_run, _with_refinement(tiny_run, beta=0.5))
    assert not UPSTREAM & set(jobs), jobs
    assert jobs["detect_anomalies"] == 1
    assert jobs["generate_candidates"] == 1  # classes_per_job 0: one job for every class
    assert jobs["build_refined_set"] == 4
    assert jobs["evaluate"] == 4 * len(MODELS)  # the random subset's evaluations stay
    assert jobs["aggregate_results"] == 1


def test_changing_top_k_reruns_only_conf_sim(tiny_run):
    jobs = planned_jobs(tiny_run, _with_refinement(tiny_run, top_k=1))
    assert set(jobs) == {"build_refined_set", "evaluate", "label_consistency", "set_quality", "refinement_figures",
                         "gradcam", "learning_curves", "aggregate_results"}, jobs
    assert jobs["build_refined_set"] == 1
    assert jobs["evaluate"] == len(MODELS)


def _with_classes_per_job(workdir, dataset, configfile, per_job):
    config = yaml.safe_load((workdir / configfile).read_text()) if configfile else {"datasets": {dataset: {}}}
    config["datasets"][dataset].setdefault("synthesis", {})["classes_per_job"] = per_job
    path = workdir / f"per_job{per_job}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path.name


@pytest.mark.parametrize(
    "dataset, target, configfile, classes",
    [("digits", "results/digits_ipc10.csv", None, 10), ("tiny", "results/tiny_ipc2.csv", "tiny.yaml", CLASSES)],
)
def test_synthesis_jobs_per_class_group(tmp_path, dataset, target, configfile, classes):
    """classes_per_job 0 (the configs' default): one synthesis and one candidates job per IPC;
    1: one per class; 2: ceil(classes / 2)."""
    workdir = copy_workflow(tmp_path / "wf")
    default = planned_jobs(workdir, configfile, target)
    assert default["synthesize_initial"] == default["generate_candidates"] == 1, default
    for per_job, expected in [(1, classes), (2, -(-classes // 2))]:
        jobs = planned_jobs(workdir, _with_classes_per_job(workdir, dataset, configfile, per_job), target)
        assert jobs["synthesize_initial"] == jobs["generate_candidates"] == expected, (per_job, jobs)
        assert jobs["score_initial"] == jobs["detect_anomalies"] == 1


def test_changing_baselines_reruns_no_evaluation(tiny_run):
    """evaluation.baselines chooses which sets are evaluated; it is no setting of an evaluation
    (the tables and the quality table, which list the sets, are redone)."""
    config = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["evaluation"]["baselines"] = ["random", "kcenter"]
    (tiny_run / "baselines.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tiny_run, "baselines.yaml")
    assert set(jobs) <= {"aggregate_results", "learning_curves", "set_quality"}, jobs


def test_adding_a_model_reruns_no_other_models_evaluation(tiny_run):
    """evaluation.models chooses which models are evaluated and model_epoch_scale sets each model's
    epochs: dropping one model and rescaling it re-runs no evaluation of the others (the table
    that lists the models is redone); rescaling a model re-runs that model's trainings only, and
    a scale of 1 for another model is no change."""
    config = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    evaluation = config["datasets"]["tiny"]["evaluation"]
    evaluation["models"] = ["convnet", "resnetap10"]
    evaluation["model_epoch_scale"] = {"resnet18": 0.5}
    (tiny_run / "models.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tiny_run, "models.yaml")
    assert set(jobs) <= {"aggregate_results", "learning_curves", "paper_tables"}, jobs
    evaluation["models"] = ["convnet", "resnetap10", "resnet18"]
    evaluation["model_epoch_scale"] = {"resnet18": 0.5, "convnet": 1.0}
    (tiny_run / "models.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tiny_run, "models.yaml")
    # every ResNet-18 training (each IPC 2 set and the full-data run) and nothing of the others
    resnet18_evaluations = list((tiny_run / "results" / "tiny" / "ipc2" / "eval").glob("*/resnet18.parquet"))
    assert len(resnet18_evaluations) >= 4
    assert jobs.get("evaluate") == len(resnet18_evaluations) and jobs.get("evaluate_full") == 1, jobs


def test_best_epoch_models_choose_which_evaluations_measure_it(tiny_run):
    """evaluation.best_epoch_models: with the best epoch on for the ConvNet only, the ConvNet's
    trainings re-run (they measure it now) and the ResNets' are left as they are."""
    config = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["evaluation"].update(report_best_epoch=True, best_epoch_models=["convnet"])
    (tiny_run / "best_epoch.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tiny_run, "best_epoch.yaml")
    convnet_evaluations = list((tiny_run / "results" / "tiny" / "ipc2" / "eval").glob("*/convnet.parquet"))
    assert jobs.get("evaluate") == len(convnet_evaluations) and jobs.get("evaluate_full") == 1, jobs
    assert set(jobs) <= {"evaluate", "evaluate_full", "gradcam", "learning_curves", "aggregate_results"}, jobs


def test_full_data_jobs_per_seed_give_the_same_table(tiny_run, tmp_path):
    """evaluation.full_data_jobs: per_seed splits each model's full-data runs into one job per
    seed (rule evaluate_full_seed) and merges them: the merged table is the per-model job's, byte
    for byte (a run depends on its seed only), and no other training re-runs; switching back to
    per_model re-runs the merge-or-train job only, nothing upstream."""
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(tiny_run, workdir, symlinks=True)  # copy2 keeps the mtimes: nothing looks newer
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["evaluation"]["full_data_jobs"] = "per_seed"
    (workdir / "per_seed.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(workdir, "per_seed.yaml")
    assert jobs.get("evaluate_full_seed") == len(MODELS) * len(SEEDS) and jobs.get("evaluate_full") == len(MODELS), jobs
    assert set(jobs) <= {"evaluate_full_seed", "evaluate_full", "learning_curves", "aggregate_results"}, jobs
    # the merge jobs claim no GPU, the per-seed trainings one each
    plan = snakemake(workdir, "results/tiny_ipc2.csv", "-n", "--configfile", "per_seed.yaml").stdout
    claims = set(re.findall(r"rule (evaluate_full\w*):.*?resources: [^\n]*gpu=(\d)", plan, flags=re.S))
    assert claims == {("evaluate_full", "0"), ("evaluate_full_seed", "1")}, claims
    full = workdir / "results" / "tiny" / "eval_full"
    before = {model: (full / f"{model}.parquet").read_bytes() for model in MODELS}
    snakemake(workdir, "results/tiny_ipc2.csv", "--configfile", "per_seed.yaml")
    for model in MODELS:
        runs = [pd.read_parquet(full / model / f"seed{seed}.parquet") for seed in SEEDS]
        assert [r.seed.tolist() for r in runs] == [[seed] for seed in SEEDS]
        assert (full / f"{model}.parquet").read_bytes() == before[model], model
    assert "Nothing to be done" in snakemake(workdir, "results/tiny_ipc2.csv", "-n", "--configfile", "per_seed.yaml").stdout
    # adding a seed trains that seed alone (the per-seed jobs' params leave out the seed list)
    config["datasets"]["tiny"]["evaluation"]["seeds"] = [*SEEDS, 7]
    (workdir / "seed7.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(workdir, "seed7.yaml", "results/tiny/eval_full/convnet.parquet")
    assert jobs == {"evaluate_full_seed": 1, "evaluate_full": 1}, jobs
    # back to per_model: the full-data jobs train again (their set of inputs changed), nothing upstream
    jobs = planned_jobs(workdir, "tiny.yaml")
    assert jobs.get("evaluate_full") == len(MODELS) and set(jobs) <= {"evaluate_full", "learning_curves", "aggregate_results"}, jobs


def test_report_embeds_every_declared_result(tiny_run):
    """`snakemake --report` builds one self-contained HTML file: the workflow description, every
    `report()` output of the run grouped by dataset and IPC, the contact sheets embedded (their
    bytes inside the file, not a link to results/)."""
    import base64

    snakemake(tiny_run, "results/tiny_ipc2.csv", "--configfile", "tiny.yaml", "--report", "report.html")
    html = (tiny_run / "report.html").read_text()
    assert "detector-guided dataset distillation" in html  # workflow/report/workflow.rst
    for category in ["Anomaly report", "Synthetic sets", "Refinement", "Accuracy", "Quality"]:
        assert category in html, category
    assert "tiny IPC 2" in html  # the subcategory of every entry
    for name in ["anomalies.md", "tiny_ipc2.csv", "tiny_ipc2_paired.md", "tiny_ipc2_quality.csv"]:
        assert name in html, name
    for method in ["d4m", "conf", "sim", "conf_sim"]:
        sheet = (results(tiny_run) / "ipc2" / "sets" / f"{method}.png").read_bytes()
        assert base64.b64encode(sheet).decode()[:4000] in html, f"{method}.png is not embedded"
    for picture in ["flagged", "candidates", "gradcam", "learning_curves"]:
        drawn = (results(tiny_run) / "ipc2" / "figures" / f"{picture}.png").read_bytes()
        assert base64.b64encode(drawn).decode()[:4000] in html, f"{picture}.png is not embedded"
