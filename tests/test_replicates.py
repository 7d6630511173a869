"""Set-construction replicates (detdistill.replicates, workflow/rules/replicates.smk): the
expansion key by key, the intervals by hand, and the replicate's jobs on the tiny workflow."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from detdistill.replicates import ReplicateError, check_seeds, expand_replicates, replicate_markdown, replicate_table

from conftest import assert_stops_with, planned_jobs, snakemake


def _entry():
    return {"source": {"kind": "digits"}, "detector": {"model": "convnet", "train": {"seed": 0, "epochs": 3}},
            "replicates": {"seeds": [1, 2]}, "evaluation": {"seeds": [0, 1, 2]}}


def test_expansion_changes_only_the_construction_seeds():
    config = {"datasets": {"digits": _entry()}}
    expand_replicates(config)
    assert sorted(config["datasets"]) == ["digits", "digits_rep1", "digits_rep2"]
    assert config["datasets"]["digits"] == _entry()  # the main entry untouched
    for seed in [1, 2]:
        replicate = copy.deepcopy(config["datasets"][f"digits_rep{seed}"])
        assert replicate.pop("construction_seed") == seed and replicate.pop("replicate_of") == "digits"
        assert replicate.pop("judge_of") == "digits"  # the main run's judge: same images, labels, settings
        assert replicate["detector"]["train"].pop("seed") == seed
        assert replicate.pop("replicates") == {"seeds": []}  # no replicates of replicates
        expected = _entry()
        del expected["detector"]["train"]["seed"], expected["replicates"]
        assert replicate == expected  # the same split, generator, evaluation seeds


def test_expansion_refuses_a_taken_name():
    with pytest.raises(ReplicateError, match="digits_rep1"):
        expand_replicates({"datasets": {"digits": _entry(), "digits_rep1": _entry()}})


def _runs(construction_shift):
    """d4m and conf_sim, 3 evaluation seeds; conf_sim beats d4m by 1, 2, 3 points at seeds 0-2,
    plus `construction_shift`."""
    rows = []
    for seed in range(3):
        rows.append({"model": "convnet", "method": "d4m", "seed": seed, "test_accuracy": 0.80})
        rows.append({"model": "convnet", "method": "conf_sim", "seed": seed, "test_accuracy": 0.80 + (seed + 1 + construction_shift) / 100})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("main_seed_key", ["seed", "construction_seed"])
def test_a_replicate_seed_equal_to_the_main_construction_seed_is_refused(main_seed_key):
    """It would rebuild the main set and count it as a second construction."""
    config = {"seed": 0, "datasets": {"digits": _entry()}}
    if main_seed_key == "seed":
        config["seed"] = 2
        config["datasets"]["digits"]["construction_seed"] = None  # the schema's default
    else:
        config["datasets"]["digits"]["construction_seed"] = 2
    expand_replicates(config)
    with pytest.raises(ReplicateError, match=r"`datasets\.digits\.replicates\.seeds` holds 2"):
        check_seeds(config)
    check_seeds({"seed": 0, "datasets": {"digits": _entry()}})  # 1 and 2 besides 0: fine


def test_replicate_table_by_hand():
    """The per-construction mean differences are 2, 4, 6: the interval over constructions is the
    t interval of those three; the pairs' interval (9 values) is narrower and listed apart."""
    summary, paired = replicate_table({0: _runs(0), 1: _runs(2), 2: _runs(4)})
    ours = summary.set_index("method").loc["conf_sim"]
    assert ours.constructions == 3 and ours.runs == 9
    assert ours["mean"] == pytest.approx(84.0)
    assert ours.std_between_constructions == pytest.approx(2.0)  # means 82, 84, 86
    row = paired.iloc[0]
    assert (row.method, row.baseline, row.constructions, row.pairs) == ("conf_sim", "d4m", 3, 9)
    half = stats.t.ppf(0.975, 2) * 2.0 / np.sqrt(3)
    assert (row.ci_low_constructions, row.ci_high_constructions) == pytest.approx((4 - half, 4 + half), abs=0.005)
    pair_diffs = np.array([1, 2, 3, 3, 4, 5, 5, 6, 7], dtype=float)
    pair_half = stats.t.ppf(0.975, 8) * pair_diffs.std(ddof=1) / 3
    assert (row.ci_low_pairs, row.ci_high_pairs) == pytest.approx((4 - pair_half, 4 + pair_half), abs=0.005)
    assert row.per_construction == "0:+2.00 1:+4.00 2:+6.00"
    assert "ci_low_constructions" in replicate_markdown("tiny", 2, [0, 1, 2], summary, paired)


def test_a_replicate_is_the_set_path_again(tiny_run):
    """On a finished run, the replicate plans its own set path and evaluations and nothing of the
    main run; the generator trained in the run is not trained again."""
    jobs = planned_jobs(tiny_run, "tiny.yaml", "results/tiny_ipc2_replicates.csv")
    assert "prepare_generator" not in jobs and "evaluate_full" not in jobs, jobs
    assert jobs["compute_prototypes"] == jobs["synthesize_initial"] == jobs["detect_anomalies"] == 1, jobs
    assert jobs["train_classifier"] == 1  # the detector; the judge is not needed
    assert jobs["evaluate"] == 4 * 3 and jobs["replicates"] == 1, jobs
    # its label consistency is measured by the main run's judge, not a second copy of it
    jobs = planned_jobs(tiny_run, "tiny.yaml", "results/tiny_rep1_ipc2_consistency.csv")
    assert jobs["label_consistency"] == 1 and jobs["train_classifier"] == 1, jobs


def test_replicates_without_seeds_stop_with_one_line(tiny_run):
    config = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["replicates"] = {"seeds": []}
    (tiny_run / "no_replicates.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tiny_run, "results/tiny_ipc2_replicates.csv", "-n", "--configfile", "no_replicates.yaml", check=False)
    assert_stops_with(proc, "replicates.seeds")


@pytest.mark.long
def test_replicate_run_on_the_tiny_workflow(tiny_run):
    """The replicate's sets differ from the main run's (other K-means and noise seeds), its split
    and evaluation seeds do not; the table holds both constructions."""
    snakemake(tiny_run, "results/tiny_ipc2_replicates.csv", "--configfile", "tiny.yaml")
    main, replicate = tiny_run / "results" / "tiny", tiny_run / "results" / "tiny_rep1"
    assert pd.read_parquet(main / "data" / "manifest.parquet").equals(pd.read_parquet(replicate / "data" / "manifest.parquet"))
    seeds_main, seeds_replicate = (set(pd.read_parquet(root / "ipc2" / "initial" / "part0" / "manifest.parquet").seed) for root in (main, replicate))
    assert not seeds_main & seeds_replicate  # other generation noise for every image
    table = pd.read_csv(tiny_run / "results" / "tiny_ipc2_replicates.csv")
    assert (table.constructions == 2).all() and set(table.method) == {"d4m", "conf", "sim", "conf_sim"}
    seeds = sorted(pd.read_parquet(replicate / "ipc2" / "eval" / "d4m" / "convnet.parquet").seed)
    assert seeds == sorted(pd.read_parquet(main / "ipc2" / "eval" / "d4m" / "convnet.parquet").seed)
