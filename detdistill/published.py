"""The paper's published figures (`resources/paper/zou_published.csv`) beside ours.

The table holds every cell of the paper's Tables I-V, one row each (mean ± std over the paper's 3
seeds; "-" cells left out; full-data rows have no IPC). Accuracy rows are top-1 % by the
evaluation protocol the paper used for that table, and the figure that protocol reports:
Tables I, II, V by the Minimax protocol, its `best_acc1` (the best test accuracy measured every
E // 100 epochs); Table III (CIFAR-10) by the RDED protocol, the best test accuracy of the last
fifth (measured every 10 epochs). Both are best-epoch figures (`selection`), so ours are compared
on `evaluation.headline: best_epoch`, which both presets set. Table V's "Baseline" is D4M.
Table III names no evaluation model: its rows have an empty `model` and stand beside every model
(its SRe2L and RDED cells look like RDED's own ResNet-18 CIFAR-10 figures, so ResNet-18 is the
likely one; the paper does not say). Methods we do not build keep ids of their own (dit, dm,
minimax, sre2l, rded, idc1, glad).

A run is compared only where the paper has a counterpart (`counterpart`): the paper's dataset
(by source kind and class ids), the paper's protocol for it with no preset key overridden, the
paper's image sizes, full epochs, all labels and the whole train split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data import DataError, read_class_table
from .protocols import PRESETS

TABLE = Path("resources/paper/zou_published.csv")
COLUMNS = ["table", "dataset", "ipc", "model", "method", "metric", "selection", "protocol", "mean", "std", "source"]
ACCURACY = "top1_pct"
HEADLINES = ("final_epoch", "best_epoch")
PAPER_SEEDS = 3

#: the paper's datasets: source kind, the class table naming their classes, the protocol the
#: paper evaluates them by, and the image sizes (generation / evaluation crop)
PAPER_DATASETS = {
    "imagenette": {"kind": "imagenette2", "classes": "classes/imagenette.csv", "protocol": "minimax",
                   "image_size": 256, "eval_image_size": 224},
    "imagewoof": {"kind": "imagenette2", "classes": "classes/imagewoof.csv", "protocol": "minimax",
                  "image_size": 256, "eval_image_size": 224},
    "cifar10": {"kind": "cifar10", "classes": "classes/cifar10.csv", "protocol": "rded",
                "image_size": 32, "eval_image_size": 32},
}


def headline(eval_cfg: dict) -> str:
    return eval_cfg.get("headline", "final_epoch")


def check_headline(name: str, eval_cfg: dict) -> None:
    """`headline: best_epoch` needs the best epoch measured for every evaluated model."""
    if headline(eval_cfg) != "best_epoch":
        return
    where = f"`datasets.{name}.evaluation.headline` is best_epoch"
    if not eval_cfg.get("report_best_epoch"):
        raise DataError(f"{where} but report_best_epoch is off: set report_best_epoch: true or headline: final_epoch")
    measured = eval_cfg.get("best_epoch_models")
    missing = [] if measured is None else [m for m in eval_cfg["models"] if m not in measured]
    if missing:
        raise DataError(f"{where} but best_epoch_models leaves out {missing}: add them or set headline: final_epoch")


def preset_overrides(eval_cfg: dict) -> list[str]:
    """The keys of the protocol's preset whose value in the (merged) evaluation section differs."""
    def differing(preset: dict, section: dict, prefix: str) -> list[str]:
        keys = []
        for key, value in preset.items():
            if isinstance(value, dict) and isinstance(section.get(key), dict):
                keys += differing(value, section[key], f"{prefix}{key}.")
            elif section.get(key) != value:
                keys.append(f"{prefix}{key}")
        return keys

    return differing(PRESETS[eval_cfg.get("protocol", "default")], eval_cfg, "evaluation.")


def _paper_dataset(source: dict, resources: Path) -> tuple[str | None, int]:
    """(the paper's dataset the source is, 0), or (the paper's dataset whose classes `source.classes`
    cuts down (by folder or name), its class count), or (None, 0)."""
    kind, keep = source.get("kind"), set(map(str, source.get("classes") or []))
    if not source.get("classes_file"):
        return None, 0
    try:
        ours = set(read_class_table(source["classes_file"])[0])
    except DataError:
        return None, 0
    for paper_name, paper in PAPER_DATASETS.items():
        if kind != paper["kind"]:
            continue
        folders, names = read_class_table(resources / paper["classes"])
        if keep and keep < set(folders) | set(names):
            return paper_name, len(folders)
        if ours == set(folders) and (not keep or keep == ours):
            return paper_name, 0
    return None, 0


def counterpart(name: str, dataset_cfg: dict, resources) -> dict:
    """Whether dataset `name`'s runs have published counterparts: {"dataset": the paper's dataset,
    "protocol": its protocol, "headline": ...} or {"dataset": None, "reason": one line why not}.
    `resources`: the workflow's resources folder (the paper's class tables)."""
    evaluation = dataset_cfg["evaluation"]
    source = dataset_cfg["source"]
    result = {"dataset": None, "headline": headline(evaluation)}
    paper_name, classes_of_paper = _paper_dataset(source, Path(resources))
    if classes_of_paper:
        return {**result, "reason": f"{name}: source.classes keeps {len(source['classes'])} of {paper_name}'s "
                                    f"{classes_of_paper} classes"}
    if paper_name is None:
        label = source.get("kind") if source.get("kind") == "digits" else f"{name} ({source.get('kind')})"
        return {**result, "reason": f"{label}: not a dataset of the paper (ImageNette, ImageWoof, CIFAR-10 by "
                                    "source kind and class ids)"}
    paper = PAPER_DATASETS[paper_name]
    protocol = evaluation.get("protocol", "default")
    noise = (source.get("label_noise") or {}).get("kind", "none")
    reasons = []
    if protocol != paper["protocol"]:
        reasons.append(f"evaluation.protocol {protocol}: the paper's {paper_name} protocol is {paper['protocol']}")
    else:
        overridden = preset_overrides(evaluation)
        if overridden:
            reasons.append(f"{', '.join(overridden)} overridden: not the published {protocol} protocol")
    if float(evaluation.get("epoch_scale", 1.0)) != 1.0:
        reasons.append(f"evaluation.epoch_scale {evaluation['epoch_scale']:g}: not the published protocol")
    scaled = {m: s for m, s in (evaluation.get("model_epoch_scale") or {}).items() if float(s) != 1.0}
    if scaled:
        reasons.append(f"evaluation.model_epoch_scale {scaled}: not the published protocol")
    if dataset_cfg.get("image_size") != paper["image_size"] or evaluation.get("image_size") != paper["eval_image_size"]:
        reasons.append(f"image_size {dataset_cfg.get('image_size')} / evaluation.image_size {evaluation.get('image_size')}: "
                       f"the paper's are {paper['image_size']} / {paper['eval_image_size']}")
    if noise != "none":
        reasons.append(f"source.label_noise {noise}: the paper trains on the clean labels")
    if float(source.get("validation_fraction") or 0) > 0:
        reasons.append("source.validation_fraction > 0: the paper uses the whole train split")
    if reasons:
        return {**result, "reason": f"{name}: " + "; ".join(reasons)}
    return {**result, "dataset": paper_name, "protocol": protocol}


def load(path=TABLE) -> pd.DataFrame:
    table = pd.read_csv(path, dtype={"table": str, "dataset": str, "model": str, "method": str, "metric": str,
                                     "selection": str, "protocol": str, "source": str},
                        keep_default_na=False, na_values={"ipc": [""], "mean": [""], "std": [""]})
    if list(table.columns) != COLUMNS:
        raise DataError(f"{path}: expected the columns {COLUMNS}, found {list(table.columns)}")
    table["ipc"] = table.ipc.astype("Int64")
    return table


def accuracy_cells(published: pd.DataFrame, dataset: str, ipc: int, models) -> pd.DataFrame:
    """The published accuracy of `dataset` at `ipc` (and its full-data row) per (model, method) of
    ours: a row without a model (Table III) stands beside every model in `models`. A method in two
    tables with the same figure (Table II and V's D4M and Ours) is one row naming both."""
    rows = published[(published.metric == ACCURACY) & (published.dataset == dataset)
                     & ((published.ipc == ipc) | published.ipc.isna())]
    frames = []
    for model in models:
        mine = rows[(rows.model == model) | (rows.model == "")].copy()
        mine["model_note"] = np.where(mine.model == "", "the paper names no model", "")
        frames.append(mine.assign(model=model))
    cells = pd.concat(frames, ignore_index=True) if frames else rows.iloc[:0].assign(model_note="")
    cells = (cells.groupby(["model", "method", "mean", "std"], dropna=False, sort=True)
             .agg(source=("source", ", ".join), model_note=("model_note", "first")).reset_index())
    if cells.duplicated(["model", "method"]).any():
        clash = cells[cells.duplicated(["model", "method"], keep=False)]
        raise DataError(f"{TABLE}: different published figures for {clash[['model', 'method']].values.tolist()}")
    return cells


#: the per-run column of each headline figure (in %)
RUN_COLUMN = {"final_epoch": "test_accuracy_pct", "best_epoch": "best_epoch_test_accuracy_pct"}
#: the summary's columns beside the published figure
PUBLISHED_COLUMNS = ["published_mean", "published_std", "published_in", "ours_minus_published", "vs_published_ci_low",
                     "vs_published_ci_high", "vs_published"]
NOT_COMPARED = {"dataset": None, "headline": "final_epoch", "reason": "no published comparison asked for"}


def add_headline(summary: pd.DataFrame, table: pd.DataFrame, headline_metric: str) -> pd.DataFrame:
    """The summary with `headline_metric`, `headline_mean`, `headline_std` (%, over the seeds):
    a copy of `mean`/`std` (final epoch) or of the best-epoch columns."""
    column = RUN_COLUMN[headline_metric]
    if column not in table.columns:
        raise DataError(f"the evaluation tables have no {column}: headline {headline_metric} needs "
                        "evaluation.report_best_epoch; re-run the evaluations with it or set headline: final_epoch")
    figures = (table.groupby(["model", "method"], sort=True)[column].agg(headline_mean="mean", headline_std="std")
               .reset_index().round({"headline_mean": 2, "headline_std": 2}))
    return summary.assign(headline_metric=headline_metric).merge(figures, on=["model", "method"], how="left",
                                                                 validate="one_to_one")


def beside_published(summary: pd.DataFrame, table: pd.DataFrame, comparison: dict, ipc: int,
                     published: pd.DataFrame | None) -> pd.DataFrame:
    """The summary with PUBLISHED_COLUMNS: per (model, method) with a published figure, that
    figure, ours (headline) minus it with Welch's 95% interval (`stats.welch_difference`, the
    paper's 3 seeds) and the verdict; `vs_published` says "no published figure" for a method the
    paper does not report, and the reason for a run with no published counterpart."""
    from .stats import round_differences, welch_difference

    frame = summary.copy()
    for column in PUBLISHED_COLUMNS:
        frame[column] = np.nan if column != "published_in" and column != "vs_published" else ""
    if comparison.get("dataset") is None:
        frame["vs_published"] = f"no published counterpart: {comparison['reason']}"
        return frame
    cells = accuracy_cells(published, comparison["dataset"], ipc, sorted(frame.model.unique()))
    column = RUN_COLUMN[comparison["headline"]]
    for i, row in frame.iterrows():
        hit = cells[(cells.model == row.model) & (cells.method == row.method)]
        if hit.empty:
            frame.loc[i, "vs_published"] = "no published figure"
            continue
        cell = hit.iloc[0]
        ours = table.loc[(table.model == row.model) & (table.method == row.method), column].dropna()
        result = welch_difference(ours.to_numpy(), cell["mean"], cell["std"], PAPER_SEEDS)
        note = f" ({cell.model_note})" if cell.model_note else ""
        frame.loc[i, ["published_mean", "published_std", "published_in", "ours_minus_published", "vs_published_ci_low",
                      "vs_published_ci_high", "vs_published"]] = [
            cell["mean"], cell["std"], cell.source + note, result["diff"], result["ci_low"], result["ci_high"],
            result["verdict"]]
    return round_differences(frame, ["ours_minus_published", "vs_published_ci_low", "vs_published_ci_high"])


def headline_line(comparison: dict) -> str:
    """What a table's header says its headline figure is, and which it shows beside it."""
    from .stats import METRIC_NAMES

    if comparison["headline"] == "best_epoch":
        return (f"Headline: {METRIC_NAMES['best_epoch']} (`evaluation.headline: best_epoch`: the best of the measured "
                "epochs, as Minimax and RDED report; optimistic, the epoch is chosen on the test split); the "
                f"{METRIC_NAMES['final_epoch']} beside it.")
    return (f"Headline: {METRIC_NAMES['final_epoch']} (`evaluation.headline: final_epoch`); the "
            f"{METRIC_NAMES['best_epoch']} beside it where measured.")


def published_line(comparison: dict) -> str:
    """What a table's header says about the published figures: where they come from and how ours
    are compared, or the one line why these runs have no published counterpart."""
    if comparison.get("dataset") is None:
        return f"No published counterpart: {comparison['reason']}."
    return (f"Published: the paper's {comparison['dataset']} figures ({TABLE}), mean ± std over its 3 seeds, the "
            f"{comparison['protocol']} protocol's best-epoch figure. Ours minus published: the difference of the "
            "means with Welch's 95% t interval from our per-seed headline values and the published mean and std "
            "(n = 3, the paper's seeds); `reproduced` when the interval holds 0, else `below` or `above`.")


def published_section(summary: pd.DataFrame, comparison: dict) -> str:
    """`published_line`, then the summary's cells that have a published figure as a markdown table."""
    from .stats import difference_text, mean_std_text

    if comparison.get("dataset") is None:
        return published_line(comparison)
    rows = summary[summary.published_mean.notna()]
    if rows.empty:
        return published_line(comparison) + "\n\nThe paper publishes no figure for these models and methods."
    shown = pd.DataFrame({
        "model": rows.model, "method": rows.method, "published": [mean_std_text(m, s) for m, s in zip(rows.published_mean, rows.published_std)],
        "in": rows.published_in, "ours (headline)": [mean_std_text(m, s) for m, s in zip(rows.headline_mean, rows.headline_std)],
        "ours - published [95% Welch]": [difference_text(d, lo, hi) for d, lo, hi in
                                         zip(rows.ours_minus_published, rows.vs_published_ci_low, rows.vs_published_ci_high)],
        "verdict": rows.vs_published})
    return published_line(comparison) + "\n\n" + shown.to_markdown(index=False)


def quality_markdown(published: pd.DataFrame, dataset: str) -> str:
    """Table IV's published set quality of `dataset` (IPC 50: FID, precision, density, coverage,
    in Inception features against the real train split), for reading beside ours; empty when
    the paper has none for it."""
    from .stats import mean_std_text

    rows = published[(published.table == "IV") & (published.dataset == dataset)]
    if rows.empty:
        return ""
    shown = rows.assign(cell=[mean_std_text(m, s) for m, s in zip(rows["mean"], rows["std"])])
    grid = shown.pivot(index=["ipc", "method"], columns="metric", values="cell")
    grid = grid.reindex(index=list(dict.fromkeys(zip(rows.ipc, rows.method))), columns=list(dict.fromkeys(rows.metric)))
    return grid.reset_index().to_markdown(index=False)
