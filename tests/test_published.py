"""The paper's published figures (resources/paper/zou_published.csv) and the comparison of ours with
them (detdistill.published, stats.welch_difference), and the headline figure (`evaluation.headline`)."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from detdistill import protocols, published
from detdistill.data import DataError
from detdistill.paper_tables import accuracy_long, tables_markdown
from detdistill.stages import evaluation
from detdistill.stats import welch_difference

from conftest import REPO

# The section "The paper's published numbers" of the development notes' REFERENCE.md
# (../shared/REFERENCE.md), verbatim: the CSV must hold exactly these cells.
PUBLISHED_TEXT = """
Table II, ImageNette, ResNetAP-10 (Random, DiT, DM, D4M, Minimax, Ours, Full):
IPC 10: 54.2±1.6, 59.1±0.7, 60.8±0.6, 59.3±2.0, 57.7±1.2, 61.7±1.9, 92.6;
IPC 20: 63.5±0.5, 64.8±1.2, 66.5±1.1, 68.3±0.1, 64.7±0.8, 70.6±1.6;
IPC 50: 76.1±1.1, 73.3±0.9, 76.2±0.4, 76.5±1.6, 73.9±0.3, 77.7±1.7.
Table III, CIFAR-10 (SRe2L, RDED, D4M, Ours, Full): IPC 10: 29.3±0.5, 37.1±0.3, 36.1±1.5,
39.8±0.9, 91.4; IPC 50: 45.0±0.7, 62.1±0.1, 66.0±1.0, 66.5±1.6.
Table V, ImageNette ResNetAP-10 ablation (Baseline, Conf, Sim, Conf+Sim): IPC 10: 59.3±2.0,
59.9±1.4, 59.3±1.9, 61.7±1.9; IPC 20: 68.3±0.1, 70.2±0.9, 69.2±0.8, 70.6±1.6; IPC 50: 76.5±1.6,
76.3±0.9, 76.0±0.5, 77.7±1.7.
Table IV, IPC 50 (FID, precision %, density, coverage %): ImageNette D4M 54.38±0.94, 75.60±1.93,
0.73±0.04, 10.30±0.67; Ours 52.96±0.39, 79.47±0.94, 0.79±0.02, 10.89±0.51. ImageWoof D4M
51.60±0.53, 79.26±0.75, 0.73±0.02, 10.36±0.38; Ours 50.18±0.95, 81.27±0.83, 0.77±0.03, 10.74±0.45.
Table I, ImageWoof (Random, K-Center, Herding, DiT, DM, IDC-1, GLaD, Minimax, D4M, Ours, Full;
"-" not reported), per IPC and model (ConvNet-6 / ResNetAP-10 / ResNet-18):
- IPC 10: ConvNet-6 24.3±1.1, 19.4±0.9, 26.7±0.5, 34.2±1.1, 26.9±1.2, 33.3±1.1, 33.8±0.9,
  33.3±1.7, 28.3±2.1, 29.9±0.5, 86.4±0.2; ResNetAP-10 29.4±0.8, 22.1±0.1, 32.0±0.3, 34.7±0.5,
  30.3±1.2, 39.1±0.5, 32.9±0.9, 36.2±3.2, 33.4±1.5, 33.7±1.1, 87.5±0.5; ResNet-18 27.7±0.9,
  21.1±0.4, 30.2±1.2, 34.7±0.4, 33.4±0.7, 37.3±0.2, 31.7±0.8, 35.7±1.6, 32.5±1.5, 33.7±0.6, 89.3±1.2.
- IPC 20: ConvNet-6 29.1±0.7, 21.5±0.8, 29.5±0.3, 36.1±0.8, 29.9±1.0, 35.5±0.8, -, 37.3±0.1,
  32.6±1.4, 35.1±1.4; ResNetAP-10 32.7±0.4, 25.1±0.7, 34.9±0.1, 41.1±0.8, 35.2±0.6, 43.4±0.3, -,
  43.3±2.7, 39.8±1.1, 41.6±1.9; ResNet-18 29.7±0.5, 23.6±0.3, 32.2±0.6, 40.5±0.5, 29.8±1.7,
  38.6±0.2, -, 41.8±1.9, 39.0±1.6, 40.1±0.8.
- IPC 50: ConvNet-6 41.3±0.6, 36.5±1.0, 40.3±0.7, 46.5±0.8, 44.4±1.0, 43.9±1.2, -, 50.9±0.8,
  47.9±1.0, 51.1±1.0; ResNetAP-10 47.2±1.3, 40.6±0.4, 49.1±0.7, 49.3±0.2, 47.1±1.1, 48.3±1.0, -,
  53.9±0.7, 54.5±0.5, 55.3±0.8; ResNet-18 47.9±1.8, 39.6±1.0, 48.3±1.2, 50.1±0.5, 46.2±0.6,
  48.3±0.8, -, 53.7±0.6, 57.5±2.0, 58.3±0.4.
- IPC 70: ConvNet-6 46.3±0.6, 38.6±0.7, 46.2±0.6, 50.1±1.2, 47.5±0.8, 48.9±0.7, -, 51.3±0.6,
  52.8±0.7, 53.4±0.9; ResNetAP-10 50.8±0.6, 45.9±1.5, 53.4±1.4, 54.3±0.9, 51.7±0.8, 52.8±1.8, -,
  57.0±0.2, 57.2±1.4, 57.9±0.7; ResNet-18 52.1±1.0, 44.6±1.1, 49.7±0.8, 51.5±1.0, 51.9±0.8,
  51.1±1.7, -, 56.5±0.8, 58.4±1.0, 59.7±0.6.
- IPC 100: ConvNet-6 52.2±0.4, 45.1±0.5, 54.4±1.1, 53.4±0.3, 55.0±1.3, 53.2±0.9, -, 57.8±0.9,
  56.3±1.3, 59.8±1.2; ResNetAP-10 59.4±1.0, 54.8±0.2, 61.7±0.9, 58.3±0.8, 56.4±0.8, 56.1±0.9, -,
  62.7±1.4, 59.7±0.6, 62.9±1.0; ResNet-18 61.5±1.3, 50.4±0.4, 59.3±0.7, 58.9±1.3, 60.2±1.0,
  58.3±1.2, -, 62.7±0.4, 62.3±0.8, 65.0±1.6.
"""
METHOD_IDS = {"Random": "random", "DiT": "dit", "DM": "dm", "D4M": "d4m", "Minimax": "minimax", "Ours": "conf_sim",
              "Full": "full", "SRe2L": "sre2l", "RDED": "rded", "Baseline": "d4m", "Conf": "conf", "Sim": "sim",
              "Conf+Sim": "conf_sim", "K-Center": "kcenter", "Herding": "herding", "IDC-1": "idc1", "GLaD": "glad"}
MODEL_IDS = {"ConvNet-6": "convnet", "ResNetAP-10": "resnetap10", "ResNet-18": "resnet18"}


def _cells(text: str) -> list[str]:
    return [c.strip().rstrip(".;") for c in text.split(",")]


def _parse_reference() -> set[tuple]:
    """(table, dataset, ipc, model, method, metric, mean, std) of every cell of PUBLISHED_TEXT."""
    text = " ".join(PUBLISHED_TEXT.split())
    cells = set()

    def add(table, dataset, ipc, model, methods, values, metric="top1_pct"):
        if methods[-1] == "full" and len(values) == len(methods) - 1:
            methods = methods[:-1]  # the full-data figure is printed once, at the first IPC
        assert len(methods) == len(values), (table, ipc, model, values)
        for method, value in zip(methods, values):
            if value == "-":
                continue
            mean, _, std = value.partition("±")
            cells.add((table, dataset, None if method == "full" else ipc, model, method, metric, float(mean),
                       float(std) if std else None))

    by_ipc = {"II": ("imagenette", "resnetap10"), "III": ("cifar10", ""), "V": ("imagenette", "resnetap10")}
    for table, (dataset, model) in by_ipc.items():
        section = re.search(rf"Table {table}, [^(]*\(([^)]*)\):(.*?)(?= Table |$)", text).groups()
        methods = [METHOD_IDS[m.strip()] for m in section[0].split(",")]
        for ipc, values in re.findall(r"IPC (\d+): ([^;]*?)(?:;|\.$|\.(?= Table))", section[1]):
            add(table, dataset, int(ipc), model, methods, _cells(values))
    quality = re.search(r"Table IV, IPC 50 \([^)]*\): (.*?)(?= Table )", text).group(1)
    parts = re.split(r"(ImageNette|ImageWoof) ", quality)[1:]
    for dataset, block in zip(parts[::2], parts[1::2]):
        for method, values in (chunk.strip().split(" ", 1) for chunk in block.split("; ")):
            for metric, value in zip(["fid", "precision_pct", "density", "coverage_pct"], _cells(values)):
                mean, _, std = value.partition("±")
                cells.add(("IV", dataset.lower(), 50, "", METHOD_IDS[method], metric, float(mean), float(std)))
    table_one = text[text.index("Table I, ImageWoof"):]
    methods = [METHOD_IDS[m.strip()] for m in re.search(r"\(([^;]*);", table_one).group(1).split(",")]
    for ipc, block in re.findall(r"- IPC (\d+): (.*?)(?= - IPC |$)", table_one):
        for chunk in block.rstrip(".").split("; "):
            name, values = chunk.split(" ", 1)
            add("I", "imagewoof", int(ipc), MODEL_IDS[name], methods, _cells(values))
    return cells


def test_the_published_table_holds_every_cell_of_the_reference_text():
    shared = REPO.parent / "shared" / "REFERENCE.md"
    if shared.is_file():  # the development notes, where present: the text above is theirs
        assert " ".join(PUBLISHED_TEXT.split()) in " ".join(shared.read_text().split())
    expected = _parse_reference()
    # Table I: 5 IPCs x 3 models x 10 methods less GLaD's 12 "-" cells, plus 3 full-data cells;
    # II: 18 + full; III: 8 + full; IV: 2 datasets x 2 methods x 4 metrics; V: 12
    assert len(expected) == (150 - 12 + 3) + 19 + 9 + 16 + 12
    table = published.load(REPO / published.TABLE)
    got = {(r.table, r.dataset, None if pd.isna(r.ipc) else int(r.ipc), r.model, r.method, r.metric, r.mean,
            None if pd.isna(r.std) else r.std) for r in table.itertuples()}
    assert got == expected
    assert len(table) == len(expected)  # no row twice
    accuracy = table[table.metric == published.ACCURACY]
    # Tables I, II, V by the Minimax protocol, III by RDED's; every accuracy a best-epoch figure
    assert set(accuracy.groupby("table").protocol.unique().map(tuple)) == {("minimax",), ("rded",)}
    assert accuracy.groupby("table").protocol.first().to_dict() == {"I": "minimax", "II": "minimax", "III": "rded", "V": "minimax"}
    assert (accuracy.selection == "best_epoch").all() and (table.source == "Table " + table.table).all()


def test_table_ii_and_v_give_one_figure_and_table_iii_stands_beside_every_model():
    paper = published.load(REPO / published.TABLE)
    nette = published.accuracy_cells(paper, "imagenette", 10, ["convnet", "resnetap10"]).set_index(["model", "method"])
    assert ("convnet", "random") not in nette.index  # Table II is ResNetAP-10 only
    assert nette.loc[("resnetap10", "d4m"), "source"] == "Table II, Table V"  # Table V's baseline is D4M
    assert nette.loc[("resnetap10", "conf"), ["mean", "std"]].tolist() == [59.9, 1.4]
    assert nette.loc[("resnetap10", "full"), "mean"] == 92.6 and math.isnan(nette.loc[("resnetap10", "full"), "std"])
    cifar = published.accuracy_cells(paper, "cifar10", 50, ["convnet", "resnet18"]).set_index(["model", "method"])
    assert cifar.loc[("convnet", "conf_sim"), "mean"] == cifar.loc[("resnet18", "conf_sim"), "mean"] == 66.5
    assert cifar.loc[("resnet18", "rded"), "model_note"] == "the paper names no model"
    assert "full" in {m for _, m in cifar.index}  # the full-data row has no IPC: the same at IPC 50


def test_welch_difference_by_hand():
    # ours 62, 64, 63 (mean 63, sd 1) against 61.7 ± 1.9 over 3 seeds
    result = welch_difference([62.0, 64.0, 63.0], 61.7, 1.9, 3)
    a, b = 1.0 / 3, 1.9**2 / 3
    df = (a + b) ** 2 / (a**2 / 2 + b**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(a + b)
    assert df == pytest.approx(3.0291, abs=1e-4)
    assert result["diff"] == pytest.approx(1.3) and result["df"] == pytest.approx(df)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((1.3 - half, 1.3 + half))
    assert result["verdict"] == "reproduced"
    assert welch_difference([40.0, 41.0, 42.0], 54.2, 1.6, 3)["verdict"] == "below"
    # a published figure without a std (the full-data 92.6) is exact: a one-sample t, df n - 1
    exact = welch_difference([90.0, 91.0, 92.0], 92.6, float("nan"), 3)
    assert exact["df"] == 2 and exact["ci_high"] == pytest.approx(-1.6 + 4.302653 / math.sqrt(3), abs=1e-5)
    assert welch_difference([70.0], 61.7, 1.9, 3)["verdict"] == "one seed"


def _paper_config(name):
    config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    protocols.apply(config)
    return config["datasets"][name]


def test_only_the_papers_setting_has_a_published_counterpart():
    resources = REPO / "resources"
    assert published.counterpart("imagenette", _paper_config("imagenette"), resources) == {
        "dataset": "imagenette", "headline": "best_epoch", "protocol": "minimax"}
    assert published.counterpart("imagewoof", _paper_config("imagewoof"), resources)["dataset"] == "imagewoof"
    assert published.counterpart("cifar10", _paper_config("cifar10"), resources)["protocol"] == "rded"
    digits = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    protocols.apply(digits)
    answer = published.counterpart("digits", digits["datasets"]["digits"], resources)
    assert answer["dataset"] is None and answer["reason"].startswith("digits: not a dataset of the paper")
    scaled = _paper_config("imagenette")
    scaled["evaluation"] |= {"epoch_scale": 0.25, "model_epoch_scale": {"resnet18": 0.5}}
    scaled["evaluation"]["train"]["lr"] = 0.1
    reason = published.counterpart("imagenette", scaled, resources)["reason"]
    assert "evaluation.epoch_scale 0.25: not the published protocol" in reason
    assert "evaluation.train.lr overridden" in reason and "model_epoch_scale" in reason
    default = _paper_config("cifar10")
    default["evaluation"]["protocol"] = "default"
    assert "the paper's cifar10 protocol is rded" in published.counterpart("cifar10", default, resources)["reason"]
    small = _paper_config("imagewoof")
    small["source"]["classes"] = ["n02086240", "n02087394"]  # two of the ten classes
    assert "source.classes keeps 2 of imagewoof's 10 classes" in published.counterpart("imagewoof", small, resources)["reason"]


def test_headline_key_in_schema_and_presets():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    key = schema["$defs"]["dataset"]["properties"]["evaluation"]["properties"]["headline"]
    assert key["enum"] == ["final_epoch", "best_epoch"] and key["default"] == "final_epoch"
    for protocol in ("minimax", "rded"):  # both report the best test accuracy of the run
        assert protocols.PRESETS[protocol]["headline"] == "best_epoch"
        assert protocols.PRESETS[protocol]["report_best_epoch"] is True
    published.check_headline("x", {"headline": "final_epoch", "models": ["convnet"]})
    with pytest.raises(DataError, match=r"`datasets\.x\.evaluation\.headline` is best_epoch but report_best_epoch is off"):
        published.check_headline("x", {"headline": "best_epoch", "models": ["convnet"]})
    with pytest.raises(DataError, match=r"best_epoch_models leaves out \['resnet18'\]"):
        published.check_headline("x", {"headline": "best_epoch", "report_best_epoch": True, "models": ["convnet", "resnet18"],
                                       "best_epoch_models": ["convnet"]})


# An ImageNette-shaped run at IPC 10: per seed 0, 1, 2 the final-epoch and best-epoch accuracy (%)
RUNS = {
    ("resnetap10", "conf_sim"): ([60.0, 61.0, 62.0], [62.0, 64.0, 63.0]),
    ("resnetap10", "d4m"): ([57.0, 59.0, 58.0], [59.0, 60.0, 61.0]),
    ("resnetap10", "random"): ([39.0, 40.0, 41.0], [40.0, 41.0, 42.0]),
    ("resnetap10", "herding"): ([45.0, 46.0, 47.0], [46.0, 47.0, 48.0]),
    ("resnetap10", "full"): ([89.0, 90.0, 91.0], [90.0, 91.0, 92.0]),
    ("convnet", "conf_sim"): ([50.0, 52.0, 54.0], [51.0, 53.0, 55.0]),
    ("convnet", "d4m"): ([48.0, 50.0, 52.0], [49.0, 51.0, 53.0]),
}


def _aggregate(tmp_path, comparison):
    paths = []
    for (model, method), (final, best) in RUNS.items():
        paths.append(tmp_path / f"{method}_{model}.parquet")
        pd.DataFrame({"method": method, "model": model, "seed": [0, 1, 2], "train_images": 100, "epochs": 2000,
                      "test_accuracy": np.array(final) / 100, "best_epoch_test_accuracy": np.array(best) / 100,
                      "best_epoch": [1000, 1500, 2000]}).to_parquet(paths[-1])
    out = {name: tmp_path / f"out_{name}" for name in ("table.csv", "summary.csv", "paired.csv", "paired.md")}
    evaluation.aggregate(eval_paths=paths, out_csv=out["table.csv"], out_summary=out["summary.csv"], out_paired=out["paired.csv"],
                         out_paired_md=out["paired.md"], title="imagenette IPC 10", ipc=10, comparison=comparison,
                         published_path=REPO / published.TABLE)
    return (pd.read_csv(out["summary.csv"], keep_default_na=False, na_values=[""]), pd.read_csv(out["paired.csv"]),
            out["paired.md"].read_text())


IMAGENETTE = {"dataset": "imagenette", "headline": "best_epoch", "protocol": "minimax"}


def test_an_imagenette_run_beside_table_ii_by_hand(tmp_path):
    summary, paired, markdown = _aggregate(tmp_path, IMAGENETTE)
    rows = summary.set_index(["model", "method"])
    ours = rows.loc[("resnetap10", "conf_sim")]
    # the final-epoch columns stay; the headline is the best epoch: 62, 64, 63
    assert (ours["mean"], ours.best_epoch_test_selected_mean) == (61.0, 63.0)
    assert (ours.headline_metric, ours.headline_mean, ours.headline_std) == ("best_epoch", 63.0, 1.0)
    # Table II (and V), ResNetAP-10, IPC 10, Ours: 61.7 ± 1.9 over 3 seeds; Welch: see test_welch_difference_by_hand
    a, b = 1.0 / 3, 1.9**2 / 3
    half = stats.t.ppf(0.975, (a + b) ** 2 / (a**2 / 2 + b**2 / 2)) * math.sqrt(a + b)
    assert (ours.published_mean, ours.published_std, ours.published_in) == (61.7, 1.9, "Table II, Table V")
    assert ours.ours_minus_published == 1.3
    assert (ours.vs_published_ci_low, ours.vs_published_ci_high) == (round(1.3 - half, 2), round(1.3 + half, 2))
    assert ours.vs_published == "reproduced"
    random = rows.loc[("resnetap10", "random")]  # 41 against 54.2 ± 1.6
    assert random.ours_minus_published == -13.2 and random.vs_published == "below"
    full = rows.loc[("resnetap10", "full")]  # 91 against 92.6, no published std: one-sample t, df 2
    assert full.ours_minus_published == -1.6 and full.vs_published_ci_high == round(-1.6 + 4.302653 / math.sqrt(3), 2)
    # herding is not in Table II; Table II has no ConvNet
    assert rows.loc[("resnetap10", "herding"), "vs_published"] == "no published figure"
    assert rows.loc[("convnet", "conf_sim"), "vs_published"] == "no published figure"
    assert math.isnan(rows.loc[("convnet", "conf_sim"), "published_mean"])
    # paired against d4m on both figures, each labelled: best epoch 63 - 60 = +3, final 61 - 58 = +3
    pairs = paired[(paired.model == "resnetap10") & (paired.method == "conf_sim") & (paired.baseline == "d4m")]
    assert pairs.set_index("metric").mean_diff.to_dict() == {"final_epoch": 3.0, "best_epoch": 3.0}
    assert pairs.set_index("metric").per_seed.to_dict() == {"final_epoch": "0:+3.00 1:+2.00 2:+4.00",
                                                            "best_epoch": "0:+3.00 1:+4.00 2:+2.00"}
    # the headline's section first, then the other; the published table last
    assert markdown.index("## test-selected best-epoch accuracy (headline)") < markdown.index("## final-epoch test accuracy")
    assert "Headline: test-selected best-epoch accuracy (`evaluation.headline: best_epoch`)" in markdown
    assert re.search(r"\| resnetap10 \| conf_sim +\| 61\.70 ± 1\.90 \| Table II, Table V +\| 63\.00 ± 1\.00 +\|", markdown)
    assert "Welch's 95% t interval" in markdown and "(n = 3, the paper's seeds)" in markdown

    # the paper tables from this IPC: headline grid, the final epoch beside it, the published table
    accuracy = accuracy_long({10: summary}, {10: paired}, "best_epoch")
    assert accuracy.set_index(["model", "method"]).loc[("resnetap10", "conf_sim"), "diff_vs_d4m"] == 3.0
    text = tables_markdown("imagenette", accuracy, pd.DataFrame({"ipc": [], "method": []}), pd.DataFrame({"method": []}),
                           IMAGENETTE)
    main = text[text.index("## Tables I-III"): text.index("## Beside the headline")]
    assert "(test-selected best-epoch accuracy, the headline)" in main and "63.00 ± 1.00 (+3.00" in main
    assert "61.00 ± 1.00" in text[text.index("## Beside the headline: Final epoch"): text.index("## Table V")]
    beside = text[text.index("## Beside the paper's published figures"):]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in beside.splitlines() if line.startswith("|")]
    assert [10, "resnetap10", "Ours (conf + sim)", "61.70 ± 1.90", "Table II, Table V", "63.00 ± 1.00",
            f"+1.30 [{1.3 - half:+.2f}, {1.3 + half:+.2f}]", "reproduced"] == [int(cells[4][0]), *cells[4][1:]]
    assert cells[5][2:4] == ["Full data", "92.60"]  # no published std: the mean alone


def test_a_digits_run_has_no_published_counterpart_and_keeps_the_final_epoch_headline(tmp_path):
    digits = {"dataset": None, "headline": "final_epoch", "reason": "digits: not a dataset of the paper"}
    summary, paired, markdown = _aggregate(tmp_path, digits)
    assert (summary.headline_metric == "final_epoch").all()
    assert summary.headline_mean.tolist() == summary["mean"].tolist()
    assert summary.headline_std.tolist() == summary["std"].tolist()
    assert (summary.vs_published == "no published counterpart: digits: not a dataset of the paper").all()
    assert summary.published_mean.isna().all()
    assert "No published counterpart: digits: not a dataset of the paper." in markdown
    assert markdown.index("## final-epoch test accuracy (headline)") < markdown.index("## test-selected best-epoch accuracy")
    accuracy = accuracy_long({10: summary}, {10: paired})
    text = tables_markdown("digits", accuracy, pd.DataFrame({"ipc": [], "method": []}), pd.DataFrame({"method": []}), digits)
    assert text.count("No published counterpart: digits: not a dataset of the paper.") == 2  # header and section
    assert "61.00 ± 1.00 (+3.00" in text[text.index("## Tables I-III"): text.index("## Beside the headline")]


def test_a_best_epoch_headline_without_best_epoch_runs_stops(tmp_path):
    path = tmp_path / "d4m.parquet"
    pd.DataFrame({"method": "d4m", "model": "convnet", "seed": [0, 1], "test_accuracy": [0.5, 0.6]}).to_parquet(path)
    with pytest.raises(DataError, match=r"headline best_epoch needs evaluation\.report_best_epoch"):
        evaluation.aggregate(eval_paths=[path], out_csv=tmp_path / "a.csv", out_summary=tmp_path / "s.csv",
                             out_paired=tmp_path / "p.csv", out_paired_md=tmp_path / "p.md", title="t", ipc=10,
                             comparison={**IMAGENETTE}, published_path=Path(REPO / published.TABLE))


def test_paper_tables_stage_writes_the_published_figures_beside_ours(tmp_path):
    from detdistill.stages.sweeps import paper_tables

    _aggregate(tmp_path, IMAGENETTE)  # the IPC-10 summary and paired tables, as rule aggregate_results writes them
    pd.DataFrame({"method": ["d4m", "conf_sim"], "judge_fid": [0.2, 0.1]}).to_csv(tmp_path / "quality.csv", index=False)
    pd.DataFrame({"method": ["d4m", "conf_sim"], "judge_wrong_label_pct": [3.0, 0.0]}).to_csv(tmp_path / "consistency.csv", index=False)
    out = {name: tmp_path / f"tables_{name}" for name in ("md", "accuracy", "quality", "consistency")}
    paper_tables(dataset="imagenette", ipcs=[10], summary_paths=[tmp_path / "out_summary.csv"],
                 paired_paths=[tmp_path / "out_paired.csv"], quality_paths=[tmp_path / "quality.csv"],
                 consistency_paths=[tmp_path / "consistency.csv"], out_md=out["md"], out_accuracy=out["accuracy"],
                 out_quality=out["quality"], out_consistency=out["consistency"], comparison=IMAGENETTE,
                 published_path=REPO / published.TABLE)
    accuracy = pd.read_csv(out["accuracy"]).set_index(["model", "method"])
    assert accuracy.loc[("resnetap10", "conf_sim"), ["headline_mean", "published_mean", "ours_minus_published"]].tolist() == [
        63.0, 61.7, 1.3]
    assert accuracy.loc[("resnetap10", "conf_sim"), "diff_vs_d4m"] == 3.0  # paired on the headline (best epoch)
    text = out["md"].read_text()
    table_four = text[text.index("## Table IV"): text.index("## Label consistency")]
    # Table IV, ImageNette IPC 50: D4M FID 54.38 ± 0.94, Ours 52.96 ± 0.39
    assert "The paper's Table IV" in table_four and "| 54.38 ± 0.94 |" in table_four and "| 52.96 ± 0.39 |" in table_four
