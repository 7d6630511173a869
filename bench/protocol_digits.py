"""The digits sets of a finished run evaluated under a published protocol preset, beside the run's
own evaluations: does the d4m -> conf_sim difference hold under the paper's CIFAR-10 protocol?

Usage (in a finished digits run's directory, e.g. after `snakemake --cores 2`):
    python bench/protocol_digits.py --run . --protocol rded --model convnet \
        --out bench/measurements/protocol_digits_rded.md
It trains `--model` on each method's IPC set with the preset's evaluation settings (digits keeps
its own image size, seeds and `flip: false`, and the detector as teacher), reads the run's own
evaluation tables for the same sets, and writes per method mean +- std over seeds and the paired
conf_sim - d4m difference with its 95% t interval under both, as markdown and JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
from pathlib import Path

import pandas as pd
import torch
import yaml

from detdistill import protocols
from detdistill.stages import evaluation
from detdistill.stats import paired_row
from detdistill.testing.machine import cpu_description

# digits keeps these from its own config under any protocol: the size the sets are made at, the
# seeds the run's evaluations used, and no flips (a flipped digit is another glyph)
KEPT = ("models", "seeds", "image_size")


def protocol_config(digits_eval: dict, protocol: str, teacher: str) -> dict:
    written = {key: copy.deepcopy(digits_eval[key]) for key in KEPT if key in digits_eval}
    written["protocol"] = protocol
    written["train"] = {"flip": False}
    config = {"datasets": {"digits": {"evaluation": written}}}
    protocols.apply(config)
    merged = config["datasets"]["digits"]["evaluation"]
    if merged.get("teacher") == "detector":
        merged["teacher"] = teacher
    return merged


def summarise(scores: dict[str, pd.DataFrame]) -> tuple[list[dict], dict | None]:
    rows = []
    for method, table in scores.items():
        pct = 100 * table.test_accuracy
        rows.append({"method": method, "mean": round(pct.mean(), 2), "std": round(pct.std(), 2), "seeds": len(pct),
                     "epochs": int(table.epochs.iloc[0])})
    paired = None
    if {"d4m", "conf_sim"} <= set(scores):
        series = {m: 100 * scores[m].set_index("seed").test_accuracy for m in ("d4m", "conf_sim")}
        paired = paired_row(series["conf_sim"], series["d4m"])
        paired = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in paired.items()}
    return rows, paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("."))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--protocol", default="rded", choices=[p for p in protocols.PROTOCOLS if p != "default"])
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--methods", nargs="+", default=["d4m", "conf_sim"])
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)

    entry = yaml.safe_load(args.config.read_text())["datasets"]["digits"]
    results = args.run / "results" / "digits"
    eval_cfg = protocol_config(entry["evaluation"], args.protocol, str(results / "classifiers/detector/model.safetensors"))
    ipc_dir = results / f"ipc{args.ipc}"
    own, preset = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            own[method] = pd.read_parquet(ipc_dir / "eval" / method / f"{args.model}.parquet")
            out = Path(tmp) / f"{method}.parquet"
            evaluation.evaluate(set_path=ipc_dir / "sets" / f"{method}.parquet", manifest_path=results / "data/manifest.parquet",
                                source_cfg=entry["source"], model_name=args.model, eval_cfg=eval_cfg, ipc=args.ipc,
                                out_path=out)
            preset[method] = pd.read_parquet(out)
    record = {
        "machine": f"{platform.node()}: {cpu_description()}",
        "versions": {"torch": torch.__version__},
        "command": f"python bench/protocol_digits.py --run {args.run} --protocol {args.protocol} --model {args.model} "
                   f"--methods {' '.join(args.methods)} --ipc {args.ipc} --out {args.out}",
        "protocol_settings": eval_cfg | {"teacher": "the run's detector"},
    }
    lines = [f"# Digits IPC {args.ipc}, {args.model}: the run's own evaluation against the `{args.protocol}` preset", "",
             f"- machine: {record['machine']}; torch {torch.__version__}", f"- command: `{record['command']}`",
             "- kept from the digits config under the preset: image size, seeds, no flips; teacher: the run's detector", ""]
    for name, scores in (("own (config/config.yaml)", own), (f"{args.protocol} preset", preset)):
        rows, paired = summarise(scores)
        record[name] = {"methods": rows, "conf_sim_minus_d4m": paired}
        lines += [f"## {name}", "", "| method | epochs | mean % | std | seeds |", "|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['epochs']} | {r['mean']:.2f} | {r['std']:.2f} | {r['seeds']} |" for r in rows]
        if paired:
            lines += ["", f"conf_sim - d4m: {paired['mean_diff']:+.2f} [{paired['ci_low']:+.2f}, {paired['ci_high']:+.2f}] "
                          f"(95% t, {paired['seeds']} seeds: {paired['verdict']}; per seed {paired['per_seed']})"]
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
