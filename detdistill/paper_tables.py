"""The paper's tables from one dataset's runs at several IPCs: accuracy by
method and IPC per model (Tables I-III), the set quality (Table IV), the ablation of conf and sim
(Table V), and the judge's label consistency. Each from the per-IPC artifacts aggregate_results,
set_quality and label_consistency write; nothing is recomputed here.

Every accuracy is mean ± std over the evaluation seeds of the headline figure
(`evaluation.headline`: final epoch, or the test-selected best epoch that Minimax and RDED
report), the other figure in its own table beside it. A method's difference to d4m is paired per
seed on the headline figure with a 95% t interval (detdistill.stats); where the runs have a
published counterpart, the paper's figure stands beside ours with the difference and Welch's
interval (detdistill.published).
"""

from __future__ import annotations

import pandas as pd

from . import published
from .best_epoch import SUMMARY_MEAN as BEST_MEAN
from .best_epoch import SUMMARY_STD as BEST_STD
from .stats import METRIC_NAMES, difference_text, mean_std_text

NAMES = {"random": "Random", "herding": "Herding", "kcenter": "K-Center", "d4m": "D4M", "conf": "Conf", "sim": "Sim",
         "conf_sim": "Ours (conf + sim)", "full": "Full data"}
#: rows of Tables I-III: the real-data baselines, the unrefined set, ours, the upper bound
MAIN_ROWS = ["random", "herding", "kcenter", "d4m", "conf_sim", "full"]
#: columns of Table V
ABLATION = ["d4m", "conf", "sim", "conf_sim"]
QUALITY_METRICS = ["judge_fid", "judge_precision", "judge_recall", "judge_density", "judge_coverage", "inception_fid"]


def accuracy_long(summaries: dict[int, pd.DataFrame], paired: dict[int, pd.DataFrame],
                  headline: str = "final_epoch") -> pd.DataFrame:
    """Per IPC, model and method: the summary's columns (the headline and published ones among
    them) and the paired difference to d4m on the headline figure (`diff_vs_d4m`, `ci_low`,
    `ci_high`, `verdict`; empty for d4m and the full-data run)."""
    frames = []
    for ipc in sorted(summaries):
        pairs = paired[ipc]
        # tables written before the metric column pair the final epoch only
        on_headline = pairs.metric == headline if "metric" in pairs else pd.Series(headline == "final_epoch", pairs.index)
        against_d4m = pairs[(pairs.baseline == "d4m") & on_headline][["model", "method", "mean_diff", "ci_low", "ci_high", "verdict"]]
        frame = summaries[ipc].merge(against_d4m, on=["model", "method"], how="left", validate="one_to_one")
        frames.append(frame.rename(columns={"mean_diff": "diff_vs_d4m"}).assign(ipc=ipc))
    table = pd.concat(frames, ignore_index=True)
    return table[["ipc", *[c for c in table.columns if c != "ipc"]]]


def stacked(frames: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per-IPC tables (quality, consistency) in one, IPC first, methods in NAMES' order."""
    table = pd.concat([frame.assign(ipc=ipc) for ipc, frame in sorted(frames.items())], ignore_index=True)
    order = {method: i for i, method in enumerate(NAMES)}
    table = table.sort_values(["ipc", "method"], key=lambda c: c.map(order).fillna(len(order)) if c.name == "method" else c,
                              kind="stable").reset_index(drop=True)
    return table[["ipc", *[c for c in table.columns if c != "ipc"]]]


def _cell(mean, std, diff=None, low=None, high=None) -> str:
    text = mean_std_text(mean, std)
    if pd.notna(mean) and pd.notna(diff):  # pd.notna(None) is False: no difference given
        text += f" ({difference_text(diff, low, high)})"
    return text


def _grid(accuracy: pd.DataFrame, model: str, methods: list[str], mean: str, std: str, with_diff: bool) -> str:
    rows = accuracy[(accuracy.model == model) & accuracy.method.isin(methods)]
    ipcs = sorted(accuracy.ipc.unique())
    lines = []
    for method in [m for m in methods if m in set(rows.method)]:
        line = {"method": NAMES.get(method, method)}
        for ipc in ipcs:
            hit = rows[(rows.method == method) & (rows.ipc == ipc)]
            if hit.empty:
                line[f"IPC {ipc}"] = "n/a"
                continue
            r = hit.iloc[0]
            line[f"IPC {ipc}"] = _cell(r[mean], r[std], *((r.diff_vs_d4m, r.ci_low, r.ci_high) if with_diff else ()))
        lines.append(line)
    return pd.DataFrame(lines).to_markdown(index=False)


#: the summary's (mean, std) columns of each figure
FIGURE_COLUMNS = {"final_epoch": ("mean", "std"), "best_epoch": (BEST_MEAN, BEST_STD)}


def published_long(accuracy: pd.DataFrame) -> pd.DataFrame:
    """The cells of `accuracy` with a published figure, IPC and model first, methods in NAMES' order."""
    if "published_mean" not in accuracy.columns:
        return accuracy.iloc[:0]
    rows = accuracy[accuracy.published_mean.notna()]
    order = {method: i for i, method in enumerate(NAMES)}
    return rows.sort_values(["ipc", "model", "method"], kind="stable",
                            key=lambda c: c.map(order).fillna(len(order)) if c.name == "method" else c)


def _published_grid(accuracy: pd.DataFrame) -> str:
    rows = published_long(accuracy)
    if rows.empty:
        return "The paper publishes no figure for these IPCs, models and methods."
    return pd.DataFrame({
        "IPC": rows.ipc, "model": rows.model, "method": rows.method.map(lambda m: NAMES.get(m, m)),
        "published": [mean_std_text(m, s) for m, s in zip(rows.published_mean, rows.published_std)],
        "in": rows.published_in, "ours (headline)": [mean_std_text(m, s) for m, s in zip(rows.headline_mean, rows.headline_std)],
        "ours - published [95% Welch]": [difference_text(d, lo, hi) for d, lo, hi in
                                         zip(rows.ours_minus_published, rows.vs_published_ci_low, rows.vs_published_ci_high)],
        "verdict": rows.vs_published}).to_markdown(index=False)


def tables_markdown(dataset: str, accuracy: pd.DataFrame, quality: pd.DataFrame, consistency: pd.DataFrame,
                    comparison: dict | None = None, published_quality: str = "") -> str:
    """`published_quality`: the paper's Table IV for this dataset (published.quality_markdown), shown
    after ours."""
    comparison = comparison or published.NOT_COMPARED
    headline = comparison["headline"]
    other = "best_epoch" if headline == "final_epoch" else "final_epoch"
    mean, std = FIGURE_COLUMNS[headline]
    models = sorted(accuracy.model.unique())
    ipcs = ", ".join(str(i) for i in sorted(accuracy.ipc.unique()))
    out = [
        f"# {dataset}: the paper's tables (IPC {ipcs})",
        "",
        f"Test accuracy in %: {METRIC_NAMES[headline]} (the headline), mean ± std over the evaluation seeds, models",
        "trained from scratch on each set and scored on the real test split. In brackets: the set minus d4m per",
        "evaluation seed on the headline figure, mean [95% t interval]. The seeds repeat the evaluation training",
        "only; each set comes from one generation and one detector. `Full data`: the whole train split (its own",
        "epochs), the same at every IPC.",
        "",
        published.headline_line(comparison),
        "",
        published.published_line(comparison),
        "",
        f"## Tables I-III: accuracy by method and IPC ({METRIC_NAMES[headline]}, the headline)",
        "",
    ]
    for model in models:
        out += [f"### {model}", "", _grid(accuracy, model, MAIN_ROWS, mean, std, with_diff=True), ""]
    other_mean, other_std = FIGURE_COLUMNS[other]
    if other_mean in accuracy.columns and accuracy[other_mean].notna().any():
        title = ("Test-selected best epoch (Minimax's and RDED's reported figure; not a held-out result)"
                 if other == "best_epoch" else "Final epoch (a held-out figure)")
        out += [f"## Beside the headline: {title}", ""]
        for model in models:  # the models that measured it (evaluation.best_epoch_models)
            if accuracy.loc[accuracy.model == model, other_mean].notna().any():
                out += [f"### {model}", "", _grid(accuracy, model, MAIN_ROWS, other_mean, other_std, with_diff=False), ""]
    out += [f"## Table V: ablation (d4m = no refinement; conf, sim alone; ours both; {METRIC_NAMES[headline]})", ""]
    for model in models:
        out += [f"### {model}", "", _grid(accuracy, model, ABLATION, mean, std, with_diff=True), ""]
    out += ["## Beside the paper's published figures (Tables I, II, III, V)", ""]
    out += [_published_grid(accuracy) if comparison.get("dataset") else published.published_line(comparison), ""]
    out += [
        "## Table IV: set quality against the real train split",
        "",
        "`judge_*`: computed in the judge classifier's features (not Inception: `judge_fid` is not comparable with",
        "published FIDs); `inception_fid` only where InceptionV3 weights were on disk. Precision, recall, density,",
        "coverage: prdc with the configured k.",
        "",
    ]
    metrics = [m for m in QUALITY_METRICS if m in quality.columns and quality[m].notna().any()]
    shown = quality[["ipc", "method", *metrics]].copy()
    shown["method"] = shown.method.map(lambda m: NAMES.get(m, m))
    out += [shown.to_markdown(index=False, floatfmt=".3f"), ""]
    if published_quality:
        out += ["The paper's Table IV (mean ± std over its 3 seeds; Inception features, so only `inception_fid` is",
                "comparable, and only roughly: the reference images and their number may differ):", "",
                published_quality, ""]
    out += ["## Label consistency: the judge on each synthetic set", ""]
    shown = consistency.copy()
    shown["method"] = shown.method.map(lambda m: NAMES.get(m, m))
    out += [shown.to_markdown(index=False, floatfmt=".2f"), ""]
    return "\n".join(out)
