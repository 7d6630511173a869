"""Paired comparisons of methods over evaluation seeds.

Runs with the same evaluation seed share the model initialisation, data order and augmentation
draws, so method - baseline is taken per seed and the interval is a one-sample t interval on those
differences. The seeds repeat only the evaluation training: every set comes from one generation
and one detector, so the interval leaves out the variance of building the set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

OURS = "conf_sim"
REFERENCE = "d4m"
UPPER_BOUND = "full"  # the full-data run: other epochs, not a set; no comparison
CONFIDENCE = 0.95
PAIRED_COLUMNS = ["model", "method", "baseline", "seeds", "mean_diff", "std_diff", "ci_low", "ci_high", "verdict", "per_seed"]


def comparisons(methods) -> list[tuple[str, str]]:
    """(method, baseline) pairs: ours against every other method, then every other method against
    d4m (the unrefined set)."""
    methods = sorted(m for m in methods if m != UPPER_BOUND)
    pairs = [(OURS, other) for other in methods if other != OURS] if OURS in methods else []
    if REFERENCE in methods:
        pairs += [(method, REFERENCE) for method in methods if method not in (OURS, REFERENCE)]
    return pairs


def t_interval(differences: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided t interval for the mean of paired differences (NaN with fewer than 2)."""
    differences = np.asarray(differences, dtype=np.float64)
    mean = differences.mean()
    if len(differences) < 2:
        return float("nan"), float("nan")
    sem = stats.sem(differences)
    if sem == 0:  # identical differences: scipy's scale must be positive
        return float(mean), float(mean)
    low, high = stats.t.interval(confidence, len(differences) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def _verdict(low: float, high: float) -> str:
    """On the bounds as the tables print them (2 decimals), so a printed [0.00, x] never reads
    `higher`: the verdict and the interval a reader sees agree."""
    low, high = round(low, 2), round(high, 2)
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "not resolved"


def paired_row(method_runs: pd.Series, baseline_runs: pd.Series) -> dict | None:
    """`method_runs` minus `baseline_runs` (both indexed by evaluation seed) over the seeds both
    have: their count, mean, sample std, 95% t interval, the verdict the interval supports
    ("higher", "lower", "not resolved" when it holds 0) and the per-seed differences, unrounded;
    None when no seed is shared."""
    differences = (method_runs - baseline_runs).dropna().sort_index()
    if differences.empty:
        return None
    low, high = t_interval(differences.to_numpy())
    return {
        "seeds": len(differences),
        "mean_diff": differences.mean(),
        "std_diff": differences.std(),  # pandas: sample std (ddof 1), NaN for one seed
        "ci_low": low,
        "ci_high": high,
        "verdict": _verdict(low, high) if len(differences) > 1 else "one seed",
        "per_seed": " ".join(f"{seed}:{d:+.2f}" for seed, d in differences.items()),
    }


def welch_difference(ours, published_mean: float, published_std: float, published_n: int,
                     confidence: float = CONFIDENCE) -> dict:
    """Our per-seed values minus a published mean ± sample std over `published_n` seeds: the
    difference of the means with Welch's t interval (unequal variances, Welch-Satterthwaite degrees
    of freedom). A published figure without a std counts as exact (a one-sample t interval, df
    n - 1). The verdict, on the printed bounds as `_verdict`'s: "reproduced" when the interval
    holds 0, else "below" or "above"; "one seed" with a single value of ours."""
    ours = np.asarray(ours, dtype=np.float64)
    diff = float(ours.mean() - published_mean)
    if len(ours) < 2:
        return {"diff": diff, "ci_low": float("nan"), "ci_high": float("nan"), "df": float("nan"), "verdict": "one seed"}
    ours_var = ours.var(ddof=1) / len(ours)
    published_var = 0.0 if pd.isna(published_std) else float(published_std) ** 2 / published_n
    se = np.sqrt(ours_var + published_var)
    if se == 0:  # identical values of ours and an exact published figure
        low = high = diff
        df = float(len(ours) - 1)
    else:
        df = (ours_var + published_var) ** 2 / (ours_var**2 / (len(ours) - 1) + published_var**2 / (published_n - 1))
        half = stats.t.ppf(0.5 + confidence / 2, df) * se
        low, high = diff - half, diff + half
    verdict = {"higher": "above", "lower": "below", "not resolved": "reproduced"}[_verdict(low, high)]
    return {"diff": diff, "ci_low": float(low), "ci_high": float(high), "df": float(df), "verdict": verdict}


def mean_std_text(mean, std) -> str:
    """`mean ± std` as the tables print it; the mean alone for one seed (std NaN); n/a without runs."""
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.2f} ± {std:.2f}" if pd.notna(std) else f"{mean:.2f}"


def difference_text(diff, low, high) -> str:
    """A paired difference with its interval; the difference alone for one seed; n/a without pairs."""
    if pd.isna(diff):
        return "n/a"
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]" if pd.notna(low) else f"{diff:+.2f}"


def round_differences(frame: pd.DataFrame, columns=("mean_diff", "std_diff", "ci_low", "ci_high")) -> pd.DataFrame:
    """`columns` (those the frame has; by default the paired ones) to 2 decimals, as floats (a
    missing difference is NaN); + 0.0: no "-0.0" for a tiny negative mean."""
    rounded = [column for column in columns if column in frame]
    frame[rounded] = frame[rounded].astype(float).round(2) + 0.0
    return frame


def paired_differences(table: pd.DataFrame, metric: str = "test_accuracy_pct") -> pd.DataFrame:
    """One row per (model, method, baseline): `paired_row` of the two methods' per-seed `metric`.
    Models with no value of `metric` (best epoch not measured) are left out."""
    rows = []
    for model, runs in table.dropna(subset=[metric]).groupby("model", sort=True):
        by_seed = runs.pivot(index="seed", columns="method", values=metric).sort_index()
        for method, baseline in comparisons(by_seed.columns):
            row = paired_row(by_seed[method], by_seed[baseline])
            if row is not None:
                rows.append({"model": model, "method": method, "baseline": baseline, **row})
    return round_differences(pd.DataFrame(rows, columns=PAIRED_COLUMNS))


#: the per-run column (%) of each accuracy figure a table may pair and headline
METRIC_COLUMNS = {"final_epoch": "test_accuracy_pct", "best_epoch": "best_epoch_test_accuracy_pct"}
METRIC_NAMES = {"final_epoch": "final-epoch test accuracy", "best_epoch": "test-selected best-epoch accuracy"}


def paired_by_metric(table: pd.DataFrame) -> pd.DataFrame:
    """`paired_differences` of the final-epoch accuracy, then (where the runs measured it) of the
    best-epoch accuracy, each row labelled by its `metric` (a key of METRIC_COLUMNS)."""
    frames = [paired_differences(table, column).assign(metric=metric) for metric, column in METRIC_COLUMNS.items()
              if column in table.columns]
    return pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)


def paired_markdown(paired: pd.DataFrame, title: str, headline: str = "final_epoch", published: str = "") -> str:
    """The paired differences as markdown, one section per metric, the headline's first; `published`:
    a section placing ours beside the paper's figures (detdistill.published)."""
    seeds = sorted(paired.seeds.unique()) if len(paired) else []
    critical = ", ".join(f"{stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1):.2f} for {n} seeds" for n in seeds if n > 1)
    interval = f"{CONFIDENCE:.0%} t interval of the mean"
    if critical:
        interval += f" (t critical value {critical}: with few seeds the interval is wide)"
    lines = [
        f"# {title}: paired differences",
        "",
        (
            "Test accuracy of `method` minus `baseline` in points, per evaluation seed (same seed: same "
            f"initialisation, data order and augmentation), with the mean, the sample std and a {interval}. "
            "`verdict` says what the interval supports: `higher` or `lower` when it excludes 0, "
            "`not resolved` when it holds 0."
        ),
        "",
        (
            "The seeds repeat only the evaluation training. Each set comes from one generation run and one "
            "detector, so neither these intervals nor the summary's std include the variance of building "
            "the set: a re-run of the whole workflow (another generation, another detector) adds variance "
            "they do not measure."
        ),
    ]
    metrics = list(dict.fromkeys(paired.metric)) if "metric" in paired and len(paired) else [headline]
    lines += ["", f"Headline: {METRIC_NAMES[headline]} (`evaluation.headline: {headline}`)"
              + ("; the other figure's differences follow it." if len(metrics) > 1 else ".")]
    if not len(paired):
        lines += ["", "No comparisons: the table has no common methods."]
    for metric in sorted(metrics, key=lambda m: m != headline) if len(paired) else []:
        rows = paired[paired.metric == metric] if "metric" in paired else paired
        label = " (headline)" if metric == headline else ""
        lines += ["", f"## {METRIC_NAMES[metric]}{label}", "", rows.drop(columns="metric", errors="ignore").to_markdown(index=False)]
    if published:
        lines += ["", "## Beside the paper's published figures", "", published]
    return "\n".join(lines) + "\n"
