"""Render a finished run's result tables as Markdown, to keep them beside the stage times.

Usage: python bench/results_table.py --dataset cifar10 --ipc 10 50 --out bench/measurements/NAME.md
(reads results/<dataset>_ipc<N>_summary.csv and results/<dataset>_ipc<N>_consistency.csv, the
files rule aggregate_results writes; results/ itself is not committed).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pandas as pd

METHOD_ORDER = ["random", "d4m", "conf", "sim", "conf_sim", "full"]


def accuracy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Models as rows, methods as columns, 'mean ± std' cells."""
    cells = summary.assign(cell=[f"{m:.2f} ± {s:.2f}" for m, s in zip(summary["mean"], summary["std"])])
    table = cells.pivot(index="model", columns="method", values="cell")
    return table[[m for m in METHOD_ORDER if m in table.columns]].reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--ipc", type=int, nargs="+", required=True)
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    lines = [f"# {args.dataset}: results ({dt.date.today().isoformat()})", ""]
    for ipc in args.ipc:
        stem = Path(args.results) / f"{args.dataset}_ipc{ipc}"
        summary = pd.read_csv(f"{stem}_summary.csv")
        consistency = pd.read_csv(f"{stem}_consistency.csv")
        seeds = sorted(summary.seeds.unique())
        lines += [
            f"## IPC {ipc}",
            "",
            f"Top-1 accuracy (%) on the real test split, mean ± std over {', '.join(map(str, seeds))} seeds:",
            "",
            accuracy_table(summary).to_markdown(index=False),
            "",
            "Judge label consistency:",
            "",
            consistency.round(3).to_markdown(index=False),
            "",
        ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
