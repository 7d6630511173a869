"""Sweeps of beta, top-k and IPC (detdistill.sweeps, workflow/rules/sweeps.smk): the tables worked
out by hand, and the sweep targets run on the tiny workflow, reusing its main tree."""

import base64
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy import stats

from detdistill.sweeps import fit_title, ipc_markdown, ipc_table, knob_value, point_name, sweep_markdown, sweep_table

from conftest import assert_stops_with, markdown_table_rows, planned_jobs, snakemake

SWEEP_JOBS = {"sweep_detect_anomalies", "sweep_generate_candidates", "sweep_beta_refined_set", "sweep_top_k_refined_set",
              "sweep_evaluate", "knob_sweep"}


@pytest.mark.parametrize("knob, value, name", [("beta", 0.5, "beta0.5"), ("beta", 0.97, "beta0.97"), ("beta", 1, "beta1"),
                                               ("top_k", 3, "top_k3")])
def test_point_names_round_trip(knob, value, name):
    assert point_name(knob, value) == name
    assert knob_value(knob, name[len(knob):]) == value
    assert re.fullmatch("beta[0-9.e-]+|top_k[0-9]+", name)  # the rules' `point` wildcard takes it


def _runs(model, method, accuracies):
    return pd.DataFrame({"model": model, "method": method, "seed": range(len(accuracies)), "test_accuracy": accuracies})


def test_sweep_table_by_hand():
    """Mean and sample std over seeds; the difference to d4m paired by seed with its t interval;
    the configured point and the flagged count carried per row."""
    d4m = _runs("convnet", "d4m", [0.80, 0.82, 0.84])
    low = _runs("convnet", "conf_sim", [0.82, 0.85, 0.865])  # differences 2, 3, 2.5 points
    high = _runs("convnet", "conf_sim", [0.80, 0.82, 0.84])  # differences 0
    table = sweep_table("top_k", [{"value": 1, "configured": False, "runs": low, "flagged": 7},
                                  {"value": 2, "configured": True, "runs": high, "flagged": 7}], d4m)
    assert table[["value", "configured", "flagged"]].values.tolist() == [[1, False, 7], [2, True, 7]]
    first = table.iloc[0]
    assert first["mean"] == pytest.approx(84.5) and first["std"] == pytest.approx(np.std([82, 85, 86.5], ddof=1), abs=0.005)
    half_width = stats.t.ppf(0.975, 2) * np.std([2, 3, 2.5], ddof=1) / np.sqrt(3)
    assert first.diff_vs_d4m == pytest.approx(2.5)
    assert (first.ci_low, first.ci_high) == pytest.approx((2.5 - half_width, 2.5 + half_width), abs=0.005)
    assert first.verdict == "higher"
    assert table.iloc[1].diff_vs_d4m == 0 and table.iloc[1].verdict == "not resolved"
    reference = pd.DataFrame({"model": ["convnet"], "mean": [82.0], "std": [2.0]})
    text = sweep_markdown("tiny", 2, "top_k", table, reference)
    assert "## convnet (d4m: 82.00 ± 2.00)" in text
    assert "| 2 *" in text and "+2.50 [" in text
    # one seed: no std and no interval to print, the mean and the bare difference (not "nan")
    one = sweep_table("top_k", [{"value": 1, "configured": True, "runs": low.iloc[:1], "flagged": 7}], d4m.iloc[:1])
    rows = markdown_table_rows(sweep_markdown("tiny", 2, "top_k", one, reference.assign(std=float("nan"))))
    assert rows[1][-2:] == ["82", "2"] and "nan" not in str(rows), rows  # tabulate prints numbers bare


@pytest.mark.parametrize("dataset", ["digits", "noise_cifar10_sym20_clean", "a_very_long_dataset_name_of_a_noise_experiment_arm"])
@pytest.mark.parametrize("panels", [1, 2])
def test_sweep_titles_fit_their_figure(dataset, panels):
    """The plot's title, as fit_title breaks it, lies inside the figure (a one-panel CIFAR-10 sweep
    plot had its title clipped at both edges); short titles stay on one line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    title = f"{dataset} IPC 10: accuracy against top_k"
    fig = plt.figure(figsize=(4.2 * panels, 3.6), dpi=100)
    text = fig.suptitle(fit_title(title, fig.get_figwidth()))
    fig.canvas.draw()
    extent = text.get_window_extent()
    assert extent.x0 >= 0 and extent.x1 <= fig.bbox.width, (text.get_text(), extent)
    assert text.get_text().replace("\n", "").replace(" ", "") == title.replace(" ", "")  # nothing lost
    if len(title) <= 40:
        assert "\n" not in text.get_text()
    plt.close(fig)


def test_ipc_table_and_markdown():
    summaries = {
        20: pd.DataFrame({"model": ["convnet"] * 2, "method": ["d4m", "full"], "mean": [90.0, 99.0], "std": [1.0, 0.1], "seeds": 3}),
        10: pd.DataFrame({"model": ["convnet"] * 2, "method": ["d4m", "full"], "mean": [85.0, 99.0], "std": [2.0, 0.1], "seeds": 3}),
    }
    table = ipc_table(summaries)
    assert table.columns[0] == "ipc"
    assert table[["method", "ipc", "mean"]].values.tolist() == [["d4m", 10, 85.0], ["d4m", 20, 90.0], ["full", 10, 99.0], ["full", 20, 99.0]]
    rows = markdown_table_rows(ipc_markdown("tiny", table))
    assert rows == [["method", "IPC 10", "IPC 20"], ["d4m", "85.00 ± 2.00", "90.00 ± 1.00"], ["full", "99.00 ± 0.10", "99.00 ± 0.10"]]


def _sweeps(workdir):
    return yaml.safe_load((workdir / "tiny.yaml").read_text())["datasets"]["tiny"]["sweeps"]


def test_knob_sweeps_reuse_the_main_tree(tiny_run):
    """On a finished run, a sweep plans only its own points: the configured value is the main tree;
    a top-k point rebuilds conf_sim alone from the main anomalies and candidates."""
    beta = planned_jobs(tiny_run, "tiny.yaml", "results/tiny_ipc2_sweep_beta.csv")
    assert beta == {"sweep_detect_anomalies": 1, "sweep_generate_candidates": 1, "sweep_beta_refined_set": 3,
                    "sweep_evaluate": 3, "knob_sweep": 1}, beta
    top_k = planned_jobs(tiny_run, "tiny.yaml", "results/tiny_ipc2_sweep_top_k.csv")
    assert top_k == {"sweep_top_k_refined_set": 1, "sweep_evaluate": 1, "knob_sweep": 1}, top_k


def test_knob_sweeps_on_the_tiny_run(tiny_run):
    snakemake(tiny_run, "results/tiny_ipc2_sweep_beta.csv", "results/tiny_ipc2_sweep_top_k.csv", "--configfile", "tiny.yaml")
    main = tiny_run / "results" / "tiny" / "ipc2"
    point = main / "sweep" / "beta0.5"
    # a lower beta flags a subset of the images (same detector, same initial set)
    flagged_main = set(pd.read_parquet(main / "anomalies.parquet").query("defective").image_id)
    flagged_low = set(pd.read_parquet(point / "anomalies.parquet").query("defective").image_id)
    assert flagged_low <= flagged_main
    # candidates of an image flagged at both betas are the same images (the cache, the same seeds)
    candidates_main = pd.concat(pd.read_parquet(p / "manifest.parquet") for p in sorted((main / "candidates").glob("part*")))
    candidates_low = pd.concat(pd.read_parquet(p / "manifest.parquet") for p in sorted((point / "candidates").glob("part*")))
    assert set(candidates_low.source_image_id) == flagged_low
    for row in candidates_low.itertuples():
        twin = candidates_main[(candidates_main.source_image_id == row.source_image_id)
                               & (candidates_main.candidate_index == row.candidate_index)]
        assert (tiny_run / twin.image_path.iloc[0]).read_bytes() == (tiny_run / row.image_path).read_bytes()

    sweeps = _sweeps(tiny_run)
    table = pd.read_csv(tiny_run / "results" / "tiny_ipc2_sweep_beta.csv")
    assert sorted(table.value.unique()) == sorted(sweeps["beta"])
    assert set(table.method) == {"conf", "sim", "conf_sim"} and set(table.model) == set(sweeps["models"])
    assert table.groupby("value").flagged.first().to_dict() == {0.5: len(flagged_low), 0.97: len(flagged_main)}
    # the configured point is the main run's evaluation; the others their own
    for value, tree in [(0.97, main), (0.5, point)]:
        runs = pd.read_parquet(tree / "eval" / "conf_sim" / "convnet.parquet")
        row = table[(table.value == value) & (table.method == "conf_sim")].iloc[0]
        assert row["mean"] == pytest.approx(100 * runs.test_accuracy.mean(), abs=0.005)
        assert row.configured == (value == 0.97)
    d4m = pd.read_parquet(main / "eval" / "d4m" / "convnet.parquet").set_index("seed").test_accuracy
    own = pd.read_parquet(point / "eval" / "sim" / "convnet.parquet").set_index("seed").test_accuracy
    row = table[(table.value == 0.5) & (table.method == "sim")].iloc[0]
    assert row.diff_vs_d4m == pytest.approx(100 * (own - d4m).mean(), abs=0.005)

    top_k = pd.read_csv(tiny_run / "results" / "tiny_ipc2_sweep_top_k.csv")
    assert top_k[["value", "method"]].values.tolist() == [[1, "conf_sim"], [2, "conf_sim"]]
    rebuilt = pd.read_parquet(main / "sweep" / "top_k1" / "sets" / "conf_sim.parquet")
    assert len(rebuilt) == len(pd.read_parquet(main / "sets" / "conf_sim.parquet"))
    for knob in ["beta", "top_k"]:
        assert "vs d4m" in (tiny_run / "results" / f"tiny_ipc2_sweep_{knob}.md").read_text()
        with Image.open(tiny_run / "results" / f"tiny_ipc2_sweep_{knob}.png") as image:
            assert image.width > 300 and image.height > 200

    # the plots are in the report, embedded
    snakemake(tiny_run, "results/tiny_ipc2_sweep_beta.csv", "--configfile", "tiny.yaml", "--report", "sweeps.html")
    html = (tiny_run / "sweeps.html").read_text()
    assert "Sweeps" in html
    plot = (tiny_run / "results" / "tiny_ipc2_sweep_beta.png").read_bytes()
    assert base64.b64encode(plot).decode()[:2000] in html


def test_ipc_sweep_plans_each_ipc_target(tiny_run):
    jobs = planned_jobs(tiny_run, "tiny.yaml", "results/tiny_sweep_ipc.csv")
    # IPC 2 is the finished run; IPC 1 is a whole new run of the set path and its evaluations
    assert jobs["ipc_sweep"] == 1 and jobs["aggregate_results"] == 1 and jobs["compute_prototypes"] == 1, jobs
    assert not SWEEP_JOBS & set(jobs), jobs


def test_a_bad_sweep_value_stops_with_one_line(tiny_run):
    config = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["sweeps"]["beta"] = [0.5, 1.5]
    (tiny_run / "bad_sweep.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tiny_run, "results/tiny_ipc2_sweep_beta.csv", "-n", "--configfile", "bad_sweep.yaml", check=False)
    assert_stops_with(proc, "sweeps", "beta")

def test_paper_tables_by_hand():
    """Tables I-III and V from per-IPC summaries and paired tables: every cell from its own IPC,
    the d4m difference and interval beside ours, methods in the paper's order."""
    from detdistill.paper_tables import accuracy_long, stacked, tables_markdown

    def summary(shift):
        return pd.DataFrame({"model": "convnet", "method": ["conf", "conf_sim", "d4m", "full", "random", "sim"],
                             "mean": [80.0 + shift, 82.0 + shift, 79.0 + shift, 95.0, 70.0 + shift, 78.0 + shift],
                             "std": 1.0, "seeds": 3})

    def paired(shift):
        return pd.DataFrame({"model": "convnet", "method": ["conf_sim", "conf_sim", "random"], "baseline": ["d4m", "random", "d4m"],
                             "mean_diff": [3.0 + shift, 12.0, -9.0], "ci_low": [1.0, 10.0, -11.0], "ci_high": [5.0, 14.0, -7.0],
                             "verdict": ["higher", "higher", "lower"]})

    accuracy = accuracy_long({20: summary(5), 10: summary(0)}, {10: paired(0), 20: paired(5)})
    ours = accuracy[(accuracy.method == "conf_sim")].set_index("ipc")
    assert ours["mean"].to_dict() == {10: 82.0, 20: 87.0} and ours.diff_vs_d4m.to_dict() == {10: 3.0, 20: 8.0}
    assert accuracy[accuracy.method == "d4m"].diff_vs_d4m.isna().all()
    consistency = stacked({10: pd.DataFrame({"method": ["sim", "conf_sim", "d4m"], "judge_wrong_label_pct": [9.0, 0.0, 3.0]})})
    assert consistency.method.tolist() == ["d4m", "sim", "conf_sim"]
    quality = stacked({10: pd.DataFrame({"method": ["d4m", "conf_sim"], "judge_fid": [0.2, 0.1], "inception_fid": [float("nan")] * 2})})
    text = tables_markdown("tiny", accuracy, quality, consistency)
    rows = markdown_table_rows(text)
    main = rows[: rows.index(["method", "IPC 10", "IPC 20"], 1)]  # Tables I-III, up to Table V's header
    assert [r[0] for r in main] == ["method", "Random", "D4M", "Ours (conf + sim)", "Full data"]
    assert main[3] == ["Ours (conf + sim)", "82.00 ± 1.00 (+3.00 [+1.00, +5.00])", "87.00 ± 1.00 (+8.00 [+1.00, +5.00])"]
    quality_header = next(r for r in rows if "judge_fid" in r)
    assert "inception_fid" not in quality_header  # no weights offline: the column is left out, not shown empty


def test_paper_tables_best_epoch_section_lists_only_the_models_that_measured_it():
    """evaluation.best_epoch_models: a model that reports the final epoch only gets no grid of
    n/a cells in the test-selected section; its final-epoch grid stays."""
    from detdistill.paper_tables import accuracy_long, tables_markdown

    methods = ["conf_sim", "d4m", "full", "random"]
    summary = pd.DataFrame({"model": ["convnet"] * 4 + ["resnet18"] * 4, "method": methods * 2,
                            "mean": [82.0, 79.0, 95.0, 70.0, 60.0, 58.0, 80.0, 50.0], "std": 1.0, "seeds": 3,
                            "best_epoch_test_selected_mean": [84.0, 81.0, 96.0, 72.0] + [float("nan")] * 4,
                            "best_epoch_test_selected_std": [1.0] * 4 + [float("nan")] * 4})
    paired = pd.DataFrame({"model": ["convnet", "resnet18"], "method": "conf_sim", "baseline": "d4m",
                           "mean_diff": [3.0, 2.0], "ci_low": [1.0, -1.0], "ci_high": [5.0, 5.0], "verdict": ["higher", "n.s."]})
    text = tables_markdown("tiny", accuracy_long({10: summary}, {10: paired}), pd.DataFrame({"ipc": [], "method": []}),
                           pd.DataFrame({"method": []}))
    best = text[text.index("## Beside the headline: Test-selected best epoch"): text.index("## Table V")]
    assert "### convnet" in best and "84.00 ± 1.00" in best
    assert "### resnet18" not in best and "n/a" not in best
    assert "60.00 ± 1.00 (+2.00 [-1.00, +5.00])" in text  # ResNet-18's final-epoch cell


def test_paper_tables_plan_every_ipc(tiny_run):
    jobs = planned_jobs(tiny_run, "tiny.yaml", "results/tiny_tables.md")
    assert jobs["paper_tables"] == 1 and jobs["aggregate_results"] == 1 and jobs["set_quality"] == 1, jobs  # IPC 1 is new
