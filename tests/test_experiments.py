"""Label-noise experiments (detdistill.experiments): a `noise_experiments` entry becomes
datasets that differ only in labels and trust, and one table of them. The expansion and the table
are checked on hand-made inputs; the DAG (which arms run the trust stage, one-line errors) with -n;
a whole tiny experiment runs under `-m long`."""

import copy
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from detdistill import experiments
from detdistill.experiments import CLEAN_LABELS, PLAIN, TRUST, ExperimentError
from detdistill.trust import label_scores

from conftest import REPO, assert_stops_with, copy_workflow, markdown_table_rows, snakemake

TINY = yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())["datasets"]["tiny"]


def config_with(spec: dict, **datasets) -> dict:
    return {"datasets": {"tiny": copy.deepcopy(TINY), **datasets}, "noise_experiments": {"noisy": spec}}


def test_expand_makes_one_dataset_per_arm_differing_only_in_labels_and_trust():
    spec = {
        "dataset": "tiny",
        "settings": {"sym40": {"kind": "symmetric", "rate": 0.4}, "pairs": {"kind": "asymmetric", "rate": 0.2, "pairs": {"1": "2"}}},
        "trust": {"rounds": 2},
        "overrides": {"evaluation": {"models": ["convnet"]}},
    }
    config = config_with(spec)
    config["datasets"]["tiny"]["source"]["label_noise"] = {"kind": "symmetric", "rate": 0.1}  # dropped in every arm
    base = copy.deepcopy(config["datasets"]["tiny"])
    experiments.expand_noise_experiments(config)
    assert config["datasets"]["tiny"] == base  # the base entry is not touched
    names = ["noisy_clean", "noisy_sym40", "noisy_sym40_trust", "noisy_pairs", "noisy_pairs_trust"]
    assert list(config["datasets"])[1:] == names
    assert config["noise_experiments"]["noisy"]["ipc"] == 10  # the schema's default, filled in
    for name in names:
        entry = config["datasets"][name]
        # overrides merge into nested sections: the evaluation's other keys stay the base's
        assert entry["evaluation"]["models"] == ["convnet"]
        assert entry["evaluation"]["seeds"] == base["evaluation"]["seeds"]
        assert entry["trust"] == {"rounds": 2, "enabled": name.endswith("_trust")}
        expected_noise = None if name == "noisy_clean" else spec["settings"][name.split("_")[1]]
        assert entry["source"].get("label_noise") == expected_noise
        assert "replicates" not in entry  # an arm is built once (the overrides could ask for replicates)
        assert entry["judge_of"] == "tiny"  # the judge sees true labels only: the base's is trained once
        # a trust-aware arm's random subset and full data carry the plain arm's labels: run once, there
        assert entry.get("real_runs_of") == (name.removesuffix("_trust") if name.endswith("_trust") else None)
        # everything else is the base's
        rest = {k: v for k, v in entry.items() if k not in ("evaluation", "trust", "source", "judge_of", "real_runs_of")}
        assert rest == {k: v for k, v in base.items() if k not in ("evaluation", "trust", "source", "replicates")}
        assert {k: v for k, v in entry["source"].items() if k != "label_noise"} == {
            k: v for k, v in base["source"].items() if k != "label_noise"
        }
    pipelines = [(a["dataset"], a["pipeline"]) for a in experiments.arms("noisy", config["noise_experiments"]["noisy"])]
    assert pipelines == [(names[0], CLEAN_LABELS), (names[1], PLAIN), (names[2], TRUST), (names[3], PLAIN), (names[4], TRUST)]


@pytest.mark.parametrize("override", [{"judge": {"width": 4}}, {"image_size": 12}, {"source": {"validation_fraction": 0.3}}])
def test_an_arm_whose_judge_would_differ_trains_its_own(override):
    config = config_with({"dataset": "tiny", "settings": {"s": {"kind": "symmetric", "rate": 0.4}}, "overrides": override})
    experiments.expand_noise_experiments(config)
    assert [config["datasets"][arm].get("judge_of") for arm in ("noisy_clean", "noisy_s", "noisy_s_trust")] == [None] * 3


def test_with_a_validation_split_every_arm_shares_the_judge():
    """The validation split is drawn by true class, so every arm trains on the same images whatever
    its noise (test_protocol checks the split itself) and the base's judge serves them all."""
    config = config_with({"dataset": "tiny", "settings": {"s": {"kind": "symmetric", "rate": 0.4}}})
    config["datasets"]["tiny"]["source"]["validation_fraction"] = 0.2
    experiments.expand_noise_experiments(config)
    assert [config["datasets"][arm].get("judge_of") for arm in ("noisy_clean", "noisy_s", "noisy_s_trust")] == ["tiny"] * 3


@pytest.mark.parametrize(
    "spec, extra, message",
    [
        ({"dataset": "nope", "settings": {"a": {"kind": "symmetric", "rate": 0.2}}}, {}, "`noise_experiments.noisy.dataset` is 'nope'"),
        ({"dataset": "tiny", "settings": {"clean": {"kind": "symmetric", "rate": 0.2}}}, {}, "settings.clean"),
        ({"dataset": "tiny", "settings": {"a": {"kind": "symmetric", "rate": 0.2}}}, {"noisy_a_trust": TINY}, "'noisy_a_trust'"),
    ],
)
def test_expand_refuses_what_it_cannot_build(spec, extra, message):
    with pytest.raises(ExperimentError, match=re.escape(message)):
        experiments.expand_noise_experiments(config_with(spec, **extra))


def test_label_scores_by_hand():
    observed = np.array([0, 0, 1, 1, 2, 2])
    clean = np.array([0, 1, 1, 1, 2, 0])  # images 1 and 5 mislabelled
    # kept: 0, 2, 3 and 5 (recalibrated to its true class 0); image 1 (wrong) and 4 (right) dropped
    used = np.array([0, 0, 1, 1, 2, 0])
    kept = np.array([True, False, True, True, False, True])
    scores = label_scores(observed, clean, used, kept)
    assert scores == {"train_images": 4, "train_images_pct": 66.67, "observed_wrong_pct": 33.33,
                      "label_precision_pct": 100.0, "label_recall_pct": 75.0}
    plain = label_scores(observed, clean, observed, np.ones(6, dtype=bool))
    assert (plain["label_precision_pct"], plain["label_recall_pct"]) == (66.67, 100.0)
    # image 3's right label recalibrated to a wrong class: still trained on, but its right label is lost
    miscalibrated = label_scores(observed, clean, np.array([0, 0, 1, 2, 2, 0]), kept)
    assert (miscalibrated["label_precision_pct"], miscalibrated["label_recall_pct"]) == (75.0, 50.0)


def _runs(accuracies: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"method": m, "model": "convnet", "seed": s, "test_accuracy_pct": a} for m, values in accuracies.items() for s, a in enumerate(values)]
    return pd.DataFrame(rows)


def test_table_and_paired_trust_minus_plain_per_seed():
    arm_list = experiments.arms("e", {"settings": {"s": {"kind": "symmetric", "rate": 0.4}}})
    real = {"random": [50, 52, 51], "full": [95, 96, 94]}  # the trust-aware arm reports the plain arm's
    runs = {
        "e_clean": _runs({"conf_sim": [90, 91, 92], "d4m": [88, 88, 89], "random": [60, 61, 62], "full": [99, 99, 98]}),
        "e_s": _runs({"conf_sim": [70, 74, 71], "d4m": [60, 60, 60], **real}),
        "e_s_trust": _runs({"conf_sim": [80, 81, 85], "d4m": [62, 65, 61], **real}),
    }
    paired = experiments.paired_rows(runs, arm_list)
    assert paired[["comparison", "setting", "model", "method", "seeds"]].values.tolist() == [
        ["trust - plain", "s", "convnet", "d4m", 3], ["trust - plain", "s", "convnet", "conf_sim", 3],
        # what the noise costs each pipeline: every method for the plain arm, the trust-aware arm's own sets for it
        *[["clean - plain", "s", "convnet", m, 3] for m in ["d4m", "conf_sim", "random", "full"]],
        ["clean - trust", "s", "convnet", "d4m", 3], ["clean - trust", "s", "convnet", "conf_sim", 3],
    ]
    by = paired.set_index(["comparison", "method"])
    assert by.at[("trust - plain", "conf_sim"), "mean_diff"] == pytest.approx(np.mean([10, 7, 14]), abs=0.005)  # per seed
    assert by.at[("trust - plain", "d4m"), "mean_diff"] == pytest.approx(np.mean([2, 5, 1]), abs=0.005)
    assert by.at[("clean - trust", "conf_sim"), "mean_diff"] == pytest.approx(np.mean([10, 10, 7]), abs=0.005)
    assert by.at[("clean - plain", "full"), "mean_diff"] == pytest.approx(np.mean([4, 3, 4]), abs=0.005)
    assert (paired.ci_low < paired.mean_diff).all() and (paired.mean_diff < paired.ci_high).all()

    summaries = [r.groupby(["model", "method"]).test_accuracy_pct.agg(mean="mean", std="std", seeds="count").reset_index()
                 for r in runs.values()]
    consistencies = [pd.DataFrame({"method": ["conf_sim", "d4m"], "judge_wrong_label_pct": [float(i), 50.0]}) for i in range(3)]
    arm_rows = [{"dataset": a["dataset"], "setting": a["setting"], "pipeline": a["pipeline"], "train_images": 10 - i}
                for i, a in enumerate(arm_list)]
    table = experiments.experiment_table(arm_rows, summaries, consistencies)
    row = table[(table.dataset == "e_s_trust") & (table.method == "conf_sim")].iloc[0]
    assert (row.pipeline, row.train_images, row.judge_wrong_label_pct) == (TRUST, 8, 2.0)
    assert row["mean"] == pytest.approx(82.0)
    markdown = experiments.experiment_markdown("e", table, paired, "fixed", 10)
    cells = markdown_table_rows(markdown)
    header = cells[0]
    trust_row = next(r for r in cells if r[:2] == ["s", TRUST])
    assert trust_row[header.index("conf_sim")] == "82.00 ± 2.65"
    assert trust_row[header.index("conf_sim judge wrong %")] == "2"
    # the paired section: a row per comparison, setting and model, in paired_rows' order, a column per method
    paired_header = next(r for r in cells if r[0] == "comparison")
    assert paired_header == ["comparison", "setting", "model", "d4m", "conf_sim", "random", "full"]
    paired_cells = [r for r in cells if r[0] in ("trust - plain", "clean - plain", "clean - trust")]
    assert [r[0] for r in paired_cells] == ["trust - plain", "clean - plain", "clean - trust"]
    assert paired_cells[0][3].startswith("+2.67 [") and paired_cells[0][5:] == ["", ""]  # no random / full row


def test_without_the_clean_arm_only_the_noisy_arms_are_built_and_the_table_says_so():
    spec = {"dataset": "tiny", "clean_arm": False, "settings": {"s": {"kind": "symmetric", "rate": 0.4}}}
    config = config_with(spec)
    experiments.expand_noise_experiments(config)
    assert list(config["datasets"]) == ["tiny", "noisy_s", "noisy_s_trust"]
    assert "clean_arm" not in config["datasets"]["noisy_s"]  # an experiment key, not a dataset one
    arm_list = experiments.arms("noisy", config["noise_experiments"]["noisy"])
    assert [a["pipeline"] for a in arm_list] == [PLAIN, TRUST]
    runs = {a["dataset"]: _runs({"conf_sim": [70, 74, 71]}) for a in arm_list}
    summaries = [r.groupby(["model", "method"]).test_accuracy_pct.agg(mean="mean", std="std", seeds="count").reset_index()
                 for r in runs.values()]
    consistencies = [pd.DataFrame({"method": ["conf_sim"], "judge_wrong_label_pct": [0.0]})] * 2
    arm_rows = [{"dataset": a["dataset"], "setting": a["setting"], "pipeline": a["pipeline"]} for a in arm_list]
    table = experiments.experiment_table(arm_rows, summaries, consistencies)
    markdown = experiments.experiment_markdown("noisy", table, experiments.paired_rows(runs, arm_list), "fixed", 10)
    assert "no clean-label reference" in markdown and "on the true labels (reference)" not in markdown
    assert [r[1] for r in markdown_table_rows(markdown)[1:3]] == [PLAIN, TRUST]


def test_the_judge_of_a_noisy_arm_is_the_base_judge_byte_for_byte(tmp_path):
    """What `judge_of` rests on: trained from a noisy arm's manifest, the judge (true labels) is the
    file the base dataset's manifest gives."""
    from detdistill import data
    from detdistill.stages.classifiers import train_classifier

    source = TINY["source"]
    judge = {**TINY["judge"], "train": {**TINY["judge"]["train"], "epochs": 1}}
    models = []
    for name, noise in [("base", None), ("arm", {"kind": "symmetric", "rate": 0.4})]:
        cfg = {**source, "label_noise": noise} if noise else source
        manifest = data.build_manifest(cfg, seed=0)
        assert ("clean_label" in manifest) == bool(noise)
        manifest.to_parquet(tmp_path / f"{name}.parquet")
        out = tmp_path / name
        out.mkdir()
        train_classifier(manifest_path=tmp_path / f"{name}.parquet", source_cfg=cfg, image_size=TINY["image_size"], clf_cfg=judge,
                         out_model=out / "model.safetensors", out_metrics=out / "metrics.json",
                         out_test_scores=out / "test_scores.parquet", true_labels=True)
        models.append((out / "model.safetensors").read_bytes())
    noisy = pd.read_parquet(tmp_path / "arm.parquet")
    assert (noisy.label != noisy.clean_label).any()  # the arm's labels do differ
    assert models[0] == models[1]


def tiny_experiment(workdir, spec: dict) -> str:
    (workdir / "noise.yaml").write_text(yaml.safe_dump({"noise_experiments": {"noisy": spec}}))
    return "noise.yaml"


def test_dag_runs_the_trust_stage_in_trust_arms_only_and_stops_on_a_bad_base(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    spec = {"dataset": "tiny", "ipc": 2, "settings": {"sym40": {"kind": "symmetric", "rate": 0.4}}}
    config = tiny_experiment(workdir, spec)
    plan = snakemake(workdir, "results/experiments/noisy.md", "--configfile", "tiny.yaml", config, "-n").stdout
    trust_jobs = re.findall(r"rule trust_split:.*?wildcards: dataset=(\w+)", plan, flags=re.S)
    assert trust_jobs == ["noisy_sym40_trust"]
    assert len(re.findall(r"rule prepare_data:", plan)) == 4  # the base's too: its judge serves every arm
    judges = re.findall(r"rule train_classifier:.*?wildcards: dataset=(\w+), role=judge", plan, flags=re.S)
    assert judges == ["tiny"]
    # the trust-aware arm reports the plain arm's random-subset and full-data runs (same images and labels)
    full_runs = re.findall(r"rule evaluate_full:.*?wildcards: dataset=(\w+), model", plan, flags=re.S)
    assert sorted(set(full_runs)) == ["noisy_clean", "noisy_sym40"]
    random_runs = re.findall(r"rule evaluate:.*?wildcards: dataset=(\w+), ipc=2, method=random", plan, flags=re.S)
    assert sorted(set(random_runs)) == ["noisy_clean", "noisy_sym40"]
    trust_aggregate = re.search(r"rule aggregate_results:\n    input: ([^\n]*)\n(?:    .*\n)*?    wildcards: dataset=noisy_sym40_trust,", plan)
    assert "results/noisy_sym40/eval_full/" in trust_aggregate.group(1)
    assert "results/noisy_sym40_trust/ipc2/eval/d4m/" in trust_aggregate.group(1)
    assert re.search(r"rule label_consistency:\n    input: results/tiny/classifiers/judge/model.safetensors", plan)
    spec["clean_arm"] = False  # the reference arm's jobs leave the plan
    plan = snakemake(workdir, "results/experiments/noisy.md", "--configfile", "tiny.yaml", tiny_experiment(workdir, spec), "-n").stdout
    assert sorted(re.findall(r"rule prepare_data:.*?wildcards: dataset=(\w+)", plan, flags=re.S)) == ["noisy_sym40", "noisy_sym40_trust", "tiny"]
    spec["dataset"] = "tinyy"
    proc = snakemake(workdir, "results/experiments/noisy.md", "--configfile", "tiny.yaml", tiny_experiment(workdir, spec), "-n",
                     check=False)
    assert_stops_with(proc, "`noise_experiments.noisy.dataset` is 'tinyy'", "tiny")


@pytest.mark.long
def test_tiny_experiment_table_matches_its_arms(tmp_path):
    """The whole tiny experiment (3 arms: clean, 40% symmetric plain and trust-aware)."""
    workdir = copy_workflow(tmp_path / "wf")
    spec = {"dataset": "tiny", "ipc": 2, "settings": {"sym40": {"kind": "symmetric", "rate": 0.4}},
            "trust": {"rounds": 2, "warmup_epochs": 6, "epochs_per_round": 2},
            "overrides": {"evaluation": {"models": ["convnet"], "baselines": ["random"]}}}
    snakemake(workdir, "results/experiments/noisy.md", "--configfile", "tiny.yaml", tiny_experiment(workdir, spec))
    table = pd.read_csv(workdir / "results" / "experiments" / "noisy.csv")
    assert sorted(table.dataset.unique()) == ["noisy_clean", "noisy_sym40", "noisy_sym40_trust"]
    for dataset, rows in table.groupby("dataset"):
        summary = pd.read_csv(workdir / "results" / f"{dataset}_ipc2_summary.csv")
        merged = rows.merge(summary, on=["model", "method"], suffixes=("", "_arm"))
        assert len(merged) == len(summary) and np.allclose(merged["mean"], merged["mean_arm"])
    samples = pd.read_parquet(workdir / "results" / "noisy_sym40_trust" / "trust" / "samples.parquet")
    trust_row = table[table.dataset == "noisy_sym40_trust"].iloc[0]
    assert trust_row.train_images == int(samples.trusted.sum())
    plain_row = table[table.dataset == "noisy_sym40"].iloc[0]
    assert plain_row.observed_wrong_pct == pytest.approx(40, abs=1.5) and plain_row.label_recall_pct == 100
    assert (workdir / "results" / "experiments" / "noisy.md").read_text().count("## ") >= 2
    paired = pd.read_csv(workdir / "results" / "experiments" / "noisy_paired.csv")
    assert list(dict.fromkeys(paired.comparison)) == ["trust - plain", "clean - plain", "clean - trust"]
    runs = {d: pd.read_csv(workdir / "results" / f"{d}_ipc2.csv").query("model == 'convnet' and method == 'conf_sim'")
            .set_index("seed").test_accuracy_pct for d in ("noisy_sym40_trust", "noisy_sym40")}
    row = paired[(paired.comparison == "trust - plain") & (paired.method == "conf_sim")].iloc[0]
    assert row.mean_diff == pytest.approx((runs["noisy_sym40_trust"] - runs["noisy_sym40"]).mean(), abs=0.006)
