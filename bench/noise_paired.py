#!/usr/bin/env python
"""Paired-by-seed tables of one label-noise setting's two arms, for its measurement file.

The experiment's own report (rule noise_experiment) pairs the arms for every method since
2026-12-04 (trust - plain, and clean - each noisy arm), and each arm's `_paired.md` pairs its
methods; the measurement files (bench/measurements/noise_cifar10_<setting>_resnet18.md) put one
setting's figures in three tables: every method's accuracy per arm and model, each method minus d4m
within an arm, and trust-aware minus plain for every method. This script computes those from the
workflow's evaluation tables (so also for a run whose report is not built yet),
results/<dataset>[_trust]/ipc<N>/eval/<method>/<model>.parquet (a trust-aware arm without its own
random-subset evaluation reuses the plain arm's, as the workflow does). Runs are paired by
evaluation seed, with detdistill.stats' 95% t interval.

    python bench/noise_paired.py --dataset noise_cifar10_sym40_sym40 [--results results] [--ipc 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from detdistill.experiments import FROM_PLAIN_ARM, LABEL_ONLY_METHODS, TRUST_SUFFIX
from detdistill.stats import REFERENCE, difference_text, mean_std_text, paired_row

METHODS = ["random", "d4m", "conf", "sim", "conf_sim"]
ARMS = {"plain": "", "trust": TRUST_SUFFIX}


def runs_by_seed(results: Path, dataset: str, ipc: int, arm: str, method: str, model: str) -> pd.Series | None:
    """Test accuracy in % by evaluation seed of one evaluation, None when it has not run."""
    path = results / (dataset + ARMS[arm]) / f"ipc{ipc}" / "eval" / method / f"{model}.parquet"
    if not path.is_file() and method in LABEL_ONLY_METHODS:  # reused from the plain arm (`real_runs_of`)
        path = results / dataset / f"ipc{ipc}" / "eval" / method / f"{model}.parquet"
    if not path.is_file():
        return None
    table = pd.read_parquet(path)
    return table.set_index("seed").test_accuracy.sort_index() * 100


def tables(results: Path, dataset: str, ipc: int) -> str:
    """The three markdown tables: accuracies, method - d4m within each arm, trust - plain per method."""
    models = sorted({p.stem for p in (results / dataset / f"ipc{ipc}" / "eval").glob("*/*.parquet")})
    runs = {(arm, method, model): runs_by_seed(results, dataset, ipc, arm, method, model)
            for arm in ARMS for method in METHODS for model in models}
    lines = ["| arm | model | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for arm in ARMS:
        for model in models:
            cells = ["-" if (r := runs[arm, method, model]) is None else mean_std_text(r.mean(), r.std())
                     for method in METHODS]
            lines.append(f"| {arm} | {model} | " + " | ".join(cells) + " |")

    def difference(a: pd.Series | None, b: pd.Series | None) -> str | None:
        row = None if a is None or b is None else paired_row(a, b)
        return None if row is None else difference_text(row["mean_diff"], row["ci_low"], row["ci_high"])

    lines += ["", "| arm | model | comparison | mean [95% CI] |", "|---|---|---|---|"]
    for model in models:
        for arm in ARMS:
            for method in ("conf", "sim", "conf_sim"):
                text = difference(runs[arm, method, model], runs[arm, REFERENCE, model])
                if text:
                    lines.append(f"| {arm} | {model} | {method} - {REFERENCE} | {text} |")
    lines += ["", "| comparison | model | method | mean [95% CI] |", "|---|---|---|---|"]
    for model in models:
        for method in (m for m in METHODS if m not in FROM_PLAIN_ARM):  # the others are the plain arm's runs
            text = difference(runs["trust", method, model], runs["plain", method, model])
            if text:
                lines.append(f"| trust - plain | {model} | {method} | {text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="the plain arm's dataset name, e.g. noise_cifar10_sym40_sym40")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--ipc", type=int, default=10)
    args = parser.parse_args(argv)
    if not (args.results / args.dataset / f"ipc{args.ipc}" / "eval").is_dir():
        raise SystemExit(f"noise_paired: no evaluations under {args.results / args.dataset / f'ipc{args.ipc}' / 'eval'}: "
                         "give the plain arm's dataset name and the run's results folder")
    text = tables(args.results, args.dataset, args.ipc)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
