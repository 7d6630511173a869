"""The paper's tables from one dataset's runs at several IPCs (issue 10 point 10): accuracy by
method and IPC per model (Tables I-III), the set quality (Table IV), the ablation of conf and sim
(Table V), and the judge's label consistency. Each from the per-IPC artifacts aggregate_results,
set_quality and label_consistency write; nothing is recomputed here.

Every accuracy is final-epoch, mean ± std over the evaluation seeds; the test-selected best epoch
(Minimax's figure, `evaluation.report_best_epoch`) gets its own table, never replaces it. A
method's difference to d4m is paired per seed with a 95% t interval (detdistill.stats).
"""

from __future__ import annotations

import pandas as pd

from .best_epoch import SUMMARY_MEAN as BEST_MEAN
from .best_epoch import SUMMARY_STD as BEST_STD
from .stats import difference_text, mean_std_text

NAMES = {"random": "Random", "herding": "Herding", "kcenter": "K-Center", "d4m": "D4M", "conf": "Conf", "sim": "Sim",
         "conf_sim": "Ours (conf + sim)", "full": "Full data"}
#: rows of Tables I-III: the real-data baselines, the unrefined set, ours, the upper bound
MAIN_ROWS = ["random", "herding", "kcenter", "d4m", "conf_sim", "full"]
#: columns of Table V
ABLATION = ["d4m", "conf", "sim", "conf_sim"]
QUALITY_METRICS = ["judge_fid", "judge_precision", "judge_recall", "judge_density", "judge_coverage", "inception_fid"]


def accuracy_long(summaries: dict[int, pd.DataFrame], paired: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per IPC, model and method: the summary's columns and the paired difference to d4m
    (`diff_vs_d4m`, `ci_low`, `ci_high`, `verdict`; empty for d4m and the full-data run)."""
    frames = []
    for ipc in sorted(summaries):
        against_d4m = paired[ipc][paired[ipc].baseline == "d4m"][["model", "method", "mean_diff", "ci_low", "ci_high", "verdict"]]
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


def tables_markdown(dataset: str, accuracy: pd.DataFrame, quality: pd.DataFrame, consistency: pd.DataFrame) -> str:
    models = sorted(accuracy.model.unique())
    ipcs = ", ".join(str(i) for i in sorted(accuracy.ipc.unique()))
    out = [
        f"# {dataset}: the paper's tables (IPC {ipcs})",
        "",
        "Test accuracy in %: final epoch, mean ± std over the evaluation seeds, models trained from scratch on each",
        "set and scored on the real test split. In brackets: the set minus d4m per evaluation seed, mean [95% t",
        "interval]. The seeds repeat the evaluation training only; each set comes from one generation and one",
        "detector. `Full data`: the whole train split (its own epochs), the same at every IPC.",
        "",
        "## Tables I-III: accuracy by method and IPC",
        "",
    ]
    for model in models:
        out += [f"### {model}", "", _grid(accuracy, model, MAIN_ROWS, "mean", "std", with_diff=True), ""]
    if BEST_MEAN in accuracy.columns and accuracy[BEST_MEAN].notna().any():
        out += ["## Test-selected best epoch (Minimax's reported figure; not a held-out result)", ""]
        for model in models:  # the models that measured it (evaluation.best_epoch_models)
            if accuracy.loc[accuracy.model == model, BEST_MEAN].notna().any():
                out += [f"### {model}", "", _grid(accuracy, model, MAIN_ROWS, BEST_MEAN, BEST_STD, with_diff=False), ""]
    out += ["## Table V: ablation (d4m = no refinement; conf, sim alone; ours both)", ""]
    for model in models:
        out += [f"### {model}", "", _grid(accuracy, model, ABLATION, "mean", "std", with_diff=True), ""]
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
    out += ["## Label consistency: the judge on each synthetic set", ""]
    shown = consistency.copy()
    shown["method"] = shown.method.map(lambda m: NAMES.get(m, m))
    out += [shown.to_markdown(index=False, floatfmt=".2f"), ""]
    return "\n".join(out)
