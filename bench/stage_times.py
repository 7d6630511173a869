"""Summarise a finished run's Snakemake `benchmark:` files per rule and time the whole run.

Usage: python bench/stage_times.py --run-seconds S --command "..." --out bench/measurements/NAME.md
(reads benchmarks/<rule>/*.tsv of the current directory). Records the machine and the command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path

import pandas as pd

from machine_info import cpu_description


def job_table(bench_dir: Path, dataset: str | None = None) -> pd.DataFrame:
    """One row per job: rule, job (the benchmark file's stem), wall and CPU seconds, max RSS."""
    rows = []
    for tsv in sorted(Path(bench_dir).glob("*/*.tsv")):
        # benchmark files are named <dataset>[_...].tsv: keep one dataset's jobs out of another's table
        if dataset and tsv.stem != dataset and not tsv.stem.startswith(f"{dataset}_"):
            continue
        row = pd.read_csv(tsv, sep="\t").iloc[0]
        rows.append({"rule": tsv.parent.name, "job": tsv.stem, "seconds": row["s"], "max_rss_mb": row["max_rss"], "cpu_seconds": row["cpu_time"]})
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb", "cpu_seconds"])


def stage_table(bench_dir: Path, dataset: str | None = None) -> pd.DataFrame:
    jobs = job_table(bench_dir, dataset)
    return (
        jobs.groupby("rule")
        .agg(jobs=("job", "count"), wall_seconds=("seconds", "sum"), cpu_seconds=("cpu_seconds", "sum"), max_rss_mb=("max_rss_mb", "max"))
        .sort_values("wall_seconds", ascending=False)
        .round(1)
        .reset_index()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmarks", default="benchmarks")
    parser.add_argument("--dataset", help="only this dataset's jobs (default: every benchmark file)")
    parser.add_argument("--run-seconds", type=float, required=True, help="wall time of the whole snakemake command")
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--note", action="append", default=[], help="a line added under the figures (repeatable)")
    args = parser.parse_args()
    table = stage_table(Path(args.benchmarks), args.dataset)
    machine = f"{platform.node()}: {cpu_description()}, {platform.system()} {platform.release()}"
    text = "\n".join(
        [
            f"# Stage times ({dt.date.today().isoformat()})",
            "",
            f"- machine: {machine}",
            f"- command: `{args.command}`",
            f"- whole run, wall clock: {args.run_seconds:.0f} s ({args.run_seconds / 60:.1f} min)",
            "- per rule: the sum over its jobs of Snakemake's `benchmark:` wall seconds (jobs may run in parallel,",
            "  so the sums exceed the run's wall time); every rule has a `benchmark:` file.",
            "",
            table.to_markdown(index=False),
            "",
            *args.note,
            "",
        ]
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
