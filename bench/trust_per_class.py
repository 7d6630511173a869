"""Per-class trust split of finished noise-experiment arms, side by side: how right the observed
labels of each class are, and how right the trusted set makes them (detdistill.trust.per_class_table,
the table the trust stage writes into rounds.md since 2026-12-03).

Usage (in a workdir whose results/ holds the arms' trust stages):
    python bench/trust_per_class.py noise_cifar10_sym40_sym40_trust noise_cifar10_asym40_asym40_trust \
        --out bench/measurements/NAME.md
Each name is a trust-aware dataset: results/<name>/trust/samples.parquet and
results/<name>/data/manifest.parquet are read. Prints markdown; writes it to --out when given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from detdistill import data, io
from detdistill.trust import per_class_table

SHOWN = ["observed_right_pct", "trusted_precision_pct", "trusted_recall_pct", "recalibrated_in", "recalibrated_in_right_pct"]


def arm_samples(results: Path, name: str) -> pd.DataFrame:
    samples = pd.read_parquet(results / name / "trust" / "samples.parquet")
    if "clean_label" not in samples.columns:
        raise SystemExit(f"error: {results / name / 'trust' / 'samples.parquet'} has no clean_label: the truth is "
                         "unknown there, so per-class precision cannot be measured; give an arm whose noise the workflow put on")
    return samples


def comparison(results: Path, names: list[str]) -> str:
    blocks = []
    for name in names:
        samples = arm_samples(results, name)
        table = per_class_table(samples, data.class_names(pd.read_parquet(results / name / "data" / "manifest.parquet")))
        overall = 100 * float((samples.observed_label == samples.clean_label).mean())
        blocks += [f"## {name}", "", f"observed labels right overall: {overall:.2f}%", "",
                   table[["class", "observed", "trusted", *SHOWN]].to_markdown(index=False), ""]
    return "\n".join(blocks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+", help="trust-aware dataset names (results/<name>/trust/)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    text = comparison(args.results, args.names)
    print(text)
    if args.out:
        io.write_text(text + "\n", args.out)


if __name__ == "__main__":
    main()
