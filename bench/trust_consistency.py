"""The trust stage with and without TAD's consistency term (`trust.consistency_weight`), on the noisy
digits labels of a finished label-noise experiment: does the term change how well the trusted set
matches the true labels?

Usage (in a finished `results/experiments/noise_digits.md` run's directory):
    python bench/trust_consistency.py --run . --weights 0 1 --seeds 0 1 2 \
        --out bench/measurements/trust_consistency_digits.md
For each setting's trust-aware arm it reads the arm's manifest (its noisy labels and the true ones),
runs detdistill.trust.split_by_trust with the digits detector's architecture and training settings and
the experiment's `trust` settings, once per (weight, seed), the seed driving the model's
initialisation, data order, augmentation and mixtures (the noise is the run's, fixed). Reported per
setting and weight: trusted images, the trusted set's label precision and recall against the true
labels, recalibrated images and their accuracy (mean +- std over seeds), and per weight the paired
difference to weight 0 over seeds with its 95% t interval. Markdown and JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import pandas as pd
import torch
import yaml

from detdistill import data
from detdistill.device import seed_everything
from detdistill.models import build_model
from detdistill.stats import paired_row
from detdistill.testing.machine import cpu_description
from detdistill.train import TrainConfig
from detdistill.trust import TrustConfig, label_scores, split_by_trust

METRICS = ["trusted", "precision_pct", "recall_pct", "recalibrated", "recalibration_accuracy_pct"]


def one_run(manifest: pd.DataFrame, entry: dict, trust_cfg: TrustConfig, seed: int) -> dict:
    train = manifest[manifest.split == "train"].reset_index(drop=True)
    names = data.class_names(manifest)
    detector = entry["detector"]
    seed_everything(seed)
    model = build_model(detector["model"], len(names), entry["image_size"], detector.get("width", 64))
    images = data.load_images(train, entry["source"], entry["image_size"])
    observed, clean = train.label.to_numpy(), train.clean_label.to_numpy()
    samples, _ = split_by_trust(model, images, observed, clean, len(names), TrainConfig.from_dict(detector["train"]),
                                trust_cfg, torch.device("cpu"), seed)
    scores = label_scores(observed, clean, samples.label.to_numpy(), samples.trusted.to_numpy())
    moved = samples.recalibrated.to_numpy()
    return {"trusted": int(samples.trusted.sum()), "precision_pct": scores["label_precision_pct"],
            "recall_pct": scores["label_recall_pct"], "recalibrated": int(moved.sum()),
            "recalibration_accuracy_pct": 100 * float((samples.label.to_numpy()[moved] == clean[moved]).mean())
            if moved.any() else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished noise_digits run's directory")
    parser.add_argument("--experiment", default="noise_digits")
    parser.add_argument("--settings", nargs="+", default=["sym20", "sym40", "asym40"])
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)

    repo = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((repo / "config" / "noise.yaml").read_text())["noise_experiments"][args.experiment]
    entry = yaml.safe_load((repo / "config" / "config.yaml").read_text())["datasets"][spec["dataset"]]
    base = TrustConfig.from_dict({**spec.get("trust", {}), "enabled": True})
    rows = []
    for setting in args.settings:
        manifest = pd.read_parquet(args.run / "results" / f"{args.experiment}_{setting}_trust" / "data" / "manifest.parquet")
        for weight in args.weights:
            for seed in args.seeds:
                result = one_run(manifest, entry, dataclasses.replace(base, consistency_weight=weight), seed)
                rows.append({"setting": setting, "weight": weight, "seed": seed, **result})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)

    summary, paired = [], []
    for (setting, weight), group in table.groupby(["setting", "weight"], sort=False):
        summary.append({"setting": setting, "consistency_weight": weight,
                        **{m: f"{group[m].mean():.2f} ± {group[m].std():.2f}" for m in METRICS}})
        if weight == args.weights[0]:
            continue
        reference = table[(table.setting == setting) & (table.weight == args.weights[0])].set_index("seed")
        for metric in METRICS:
            row = paired_row(group.set_index("seed")[metric], reference[metric])
            paired.append({"setting": setting, "consistency_weight": weight, "metric": metric,
                           "mean_diff": round(row["mean_diff"], 2), "ci_low": round(row["ci_low"], 2),
                           "ci_high": round(row["ci_high"], 2), "verdict": row["verdict"]})
    record = {
        "date": pd.Timestamp.now().strftime("%Y-%m-%d"),
        "machine": f"{platform.node()}: {cpu_description()} (1 thread)",
        "torch": torch.__version__,
        "command": f"python bench/trust_consistency.py --run {args.run} --weights "
                   f"{' '.join(map(str, args.weights))} --seeds {' '.join(map(str, args.seeds))} --out {args.out}",
        "trust": dataclasses.asdict(base), "runs": rows, "paired": paired,
    }
    lines = [f"# Trust stage with and without the consistency term ({args.experiment})", "",
             f"- date: {record['date']}; machine: {record['machine']}; torch {record['torch']}",
             f"- command: `{record['command']}`",
             f"- trust settings: {record['trust']} (consistency_weight varied)",
             "- each run: the trust stage alone on the arm's noisy train labels (the run's noise, fixed); "
             "seeds vary the model's initialisation, data order, augmentation and mixtures",
             "- precision: the trusted set's labels that are right; recall: the rightly labelled images it keeps "
             "(against the true labels, which decide nothing)", "",
             "## Mean ± std over seeds", "", pd.DataFrame(summary).to_markdown(index=False), "",
             f"## Difference to consistency_weight {args.weights[0]} (paired by seed, 95% t interval)", "",
             pd.DataFrame(paired).to_markdown(index=False), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


if __name__ == "__main__":
    main()
