"""Summarise a finished run's Snakemake `benchmark:` files per rule and time the whole run.

Usage: python bench/stage_times.py --run-seconds S --command "..." --out bench/measurements/NAME.md
(reads benchmarks/<rule>/*.tsv of the current directory). Records the machine and the command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path

from detdistill.testing.machine import cpu_description
from detdistill.testing.workflow_run import stage_table


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
