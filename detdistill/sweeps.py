"""Sweeps of the refinement's knobs and of IPC (the paper's Fig. 5 and Tables I-III):
accuracy against beta, top-k and images per class, as tables and plots.

A beta or top-k sweep point lives under `results/{dataset}/ipc{N}/sweep/{point}/` (`beta0.7`,
`top_k3`) and mirrors the main tree: anomalies, candidates, sets and evaluations, as far as the
knob reaches. Beta changes which images are flagged, so a beta point has its own anomalies,
candidates (the image cache makes every candidate already generated for another beta free), and
conf / sim / conf_sim sets. Top-k reaches conf_sim only: a top-k point reuses the main anomalies
and candidates and rebuilds that set alone. The configured value's point is the main tree itself.
The d4m set does not depend on either knob; each point's sets are compared with it per evaluation
seed (detdistill.stats.paired_row).

An IPC sweep is the ordinary per-IPC targets side by side (`results/{dataset}_ipc{N}_summary.csv`).
"""

from __future__ import annotations

import io as _io

import pandas as pd

KNOBS = ("beta", "top_k")
#: the sets a knob changes (d4m changes with neither: it is the reference line)
KNOB_METHODS = {"beta": ["conf", "sim", "conf_sim"], "top_k": ["conf_sim"]}
REFERENCE = "d4m"
KNOB_LABELS = {"beta": "beta (flagging and acceptance threshold)", "top_k": "top-k (confident candidates kept)", "ipc": "images per class"}
TABLE_COLUMNS = ["knob", "value", "configured", "model", "method", "seeds", "mean", "std", "flagged",
                 "diff_vs_d4m", "ci_low", "ci_high", "verdict"]
#: line colours per method, the same in every plot
COLOURS = {"d4m": "#7f7f7f", "conf": "#1f77b4", "sim": "#2ca02c", "conf_sim": "#d62728", "random": "#9467bd",
           "herding": "#8c564b", "kcenter": "#e377c2", "full": "#000000"}


def point_name(knob: str, value) -> str:
    """The folder of a sweep point: `beta0.7`, `top_k3` (values as the config writes them)."""
    return f"{knob}{value:g}" if knob == "beta" else f"{knob}{int(value)}"


def knob_value(knob: str, text: str):
    return float(text) if knob == "beta" else int(text)


def sweep_table(knob: str, points: list[dict], reference_runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (point, model, method): mean and sample std over the evaluation seeds, the
    number of flagged images at that point, and the paired difference to d4m with its 95% t
    interval. `points`: per value in sweep order, `value`, `configured` (the main tree's value),
    `runs` (the per-run evaluation rows of the point's sets: model, method, seed,
    test_accuracy) and `flagged`. `reference_runs`: d4m's rows."""
    from .stats import paired_row, round_differences

    reference = reference_runs.assign(pct=100 * reference_runs.test_accuracy)
    rows = []
    for point in points:
        runs = point["runs"].assign(pct=100 * point["runs"].test_accuracy)
        for (model, method), group in runs.groupby(["model", "method"], sort=True):
            base = reference[reference.model == model].set_index("seed").pct
            paired = paired_row(group.set_index("seed").pct, base) or {}
            rows.append({"knob": knob, "value": point["value"], "configured": point["configured"], "model": model, "method": method,
                         "seeds": len(group), "mean": group.pct.mean(), "std": group.pct.std(), "flagged": point["flagged"],
                         "diff_vs_d4m": paired.get("mean_diff"), "ci_low": paired.get("ci_low"), "ci_high": paired.get("ci_high"),
                         "verdict": paired.get("verdict", "no d4m runs")})
    return round_differences(pd.DataFrame(rows, columns=TABLE_COLUMNS), ["mean", "std", "diff_vs_d4m", "ci_low", "ci_high"])


def reference_rows(reference_runs: pd.DataFrame) -> pd.DataFrame:
    """d4m's mean and std per model (the horizontal line of a knob's plot)."""
    pct = reference_runs.assign(pct=100 * reference_runs.test_accuracy)
    return pct.groupby("model", sort=True).pct.agg(mean="mean", std="std").round(2).reset_index()


def ipc_table(summaries: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """The per-IPC accuracy summaries (aggregate_results' `_summary.csv`) stacked, IPC first; the
    full-data rows (no IPC) once per IPC, as the summaries have them."""
    frames = [summary.assign(ipc=ipc) for ipc, summary in sorted(summaries.items())]
    table = pd.concat(frames, ignore_index=True)
    return table[["ipc", *[c for c in table.columns if c != "ipc"]]].sort_values(["model", "method", "ipc"], kind="stable").reset_index(drop=True)


def sweep_markdown(dataset: str, ipc: int, knob: str, table: pd.DataFrame, reference: pd.DataFrame) -> str:
    """Per model: one row per knob value with each set's mean ± std and its paired difference to
    d4m [95% t interval]; the flagged count at each beta."""
    from .stats import difference_text, mean_std_text  # scipy: not at the Snakefile's import

    lines = [
        f"# {dataset} IPC {ipc}: accuracy against {KNOB_LABELS[knob]}",
        "",
        "Test accuracy in % (mean ± std over the evaluation seeds) of models trained from scratch on the set;",
        "`vs d4m`: the set minus the unrefined d4m set per evaluation seed, mean [95% t interval]. d4m does not",
        f"depend on {knob}. The configured value (marked *) is the main run's. Every value is evaluated on the test",
        "split, so choosing a value from this table tunes it on the test split: read it as the paper's Fig. 5,",
        "and choose values on the validation split (`source.validation_fraction`, `refinement.beta_mode`).",
        "",
    ]
    for model, rows in table.groupby("model", sort=True):
        ref = reference[reference.model == model]
        ref_text = mean_std_text(ref["mean"].iloc[0], ref["std"].iloc[0]) if len(ref) else "n/a"
        lines += [f"## {model} (d4m: {ref_text})", ""]
        wide = []
        for value, group in rows.groupby("value", sort=True):
            first = group.iloc[0]
            row = {knob: f"{value:g}{' *' if first.configured else ''}"}
            if knob == "beta":
                row["flagged"] = int(first.flagged)
            for _, r in group.iterrows():
                row[r.method] = mean_std_text(r["mean"], r["std"])
                row[f"{r.method} vs d4m"] = difference_text(r.diff_vs_d4m, r.ci_low, r.ci_high)
            wide.append(row)
        lines += [pd.DataFrame(wide).to_markdown(index=False), ""]
    return "\n".join(lines)


def ipc_markdown(dataset: str, table: pd.DataFrame) -> str:
    from .stats import mean_std_text  # scipy: not at the Snakefile's import

    lines = [f"# {dataset}: accuracy against images per class", "",
             "Test accuracy in % (mean ± std over the evaluation seeds) per set and IPC, from each IPC's",
             f"`results/{dataset}_ipc<N>_summary.csv`; `full` is the whole train split (the same at every IPC).", ""]
    for model, rows in table.groupby("model", sort=True):
        cells = rows.assign(cell=[mean_std_text(m, s) for m, s in zip(rows["mean"], rows["std"])])
        wide = cells.pivot(index="method", columns="ipc", values="cell")
        wide.columns = [f"IPC {c}" for c in wide.columns]
        lines += [f"## {model}", "", wide.reset_index().to_markdown(index=False), ""]
    return "\n".join(lines)


def fit_title(title: str, width_in: float) -> str:
    """`title` in lines that fit a figure `width_in` inches wide (a suptitle's 12 pt font sets about
    10 characters per inch, wide letters included), broken after the colon where that suffices,
    else at spaces (a longer word is split): a long dataset name (noise_cifar10_sym20_clean) was
    clipped at both edges of a one-panel figure."""
    import textwrap

    width = max(20, int(10 * width_in))
    if len(title) <= width:
        return title
    head, colon, tail = title.partition(": ")
    if colon and len(head) + 1 <= width and len(tail) <= width:
        return f"{head}:\n{tail}"
    return textwrap.fill(title, width=width)


def plot(table: pd.DataFrame, x: str, title: str, reference: pd.DataFrame | None = None, configured=None) -> bytes:
    """PNG bytes: one panel per model, accuracy (mean, error bars: std over seeds) against `x`
    per method; d4m's level as a dashed line and band when it does not vary with `x`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    models = sorted(table.model.unique())
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = table[table.model == model]
        methods = sorted(rows.method.unique())
        span = (rows[x].max() - rows[x].min()) or 1.0
        for index, (method, group) in enumerate(rows.groupby("method", sort=True)):
            group = group.sort_values(x)
            # methods side by side at each value, so their error bars do not hide each other
            shift = index - (len(methods) - 1) / 2
            xs = group[x] * (1 + 0.03 * shift) if x == "ipc" else group[x] + 0.012 * span * shift
            ax.errorbar(xs, group["mean"], yerr=group["std"].fillna(0), marker="o", capsize=3, label=method,
                        color=COLOURS.get(method))
        if reference is not None and model in set(reference.model):
            ref = reference[reference.model == model].iloc[0]
            ax.axhline(ref["mean"], color=COLOURS[REFERENCE], linestyle="--", label=f"{REFERENCE} (any {x})")
            ax.axhspan(ref["mean"] - (ref["std"] or 0), ref["mean"] + (ref["std"] or 0), color=COLOURS[REFERENCE], alpha=0.15)
        if configured is not None:
            ax.axvline(configured, color="#bbbbbb", linestyle=":", label="configured")
        if x == "ipc":
            ax.set_xscale("log")
            ax.set_xticks(sorted(rows[x].unique()), [str(v) for v in sorted(rows[x].unique())])
        ax.set_title(model)
        ax.set_xlabel(KNOB_LABELS.get(x, x))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(fit_title(title, fig.get_figwidth()))
    fig.tight_layout()
    buffer = _io.BytesIO()
    # no timestamp or version in the file: identical runs give identical bytes
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
