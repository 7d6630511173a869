"""What the published evaluation protocols cost against the project's own, for a paper config's
target, counted rather than timed: parameters and training FLOPs per image of every evaluation
model (torch's FlopCounterMode, forward + backward at the protocol's crop size), the trained images
and the test passes of `results/{dataset}_ipc{N}.csv`, the detector's and the judge's work; then a
time on one GPU PROJECTED from the per-step and per-image rates measured on an H200
(bench/measurements/gpu_nvidia-h200.md, 2026-12-04), labelled as projected.

Usage: python bench/protocol_cost.py --dataset imagenette --ipc 10 --out bench/measurements/protocol_cost_imagenette
(writes OUT.json and OUT.md; a few minutes on 2 CPU cores: one forward and backward per model)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils.flop_counter import FlopCounterMode

from detdistill import protocols
from detdistill.best_epoch import measured_epochs
from detdistill.models import build_model
from detdistill.stages.evaluation import batch_size_for, epochs_for, evaluation_model
from detdistill.testing.machine import cpu_description

REPO = Path(__file__).resolve().parents[1]

#: train and test images per dataset (fastai imagenette2 / imagewoof2; CIFAR-10)
SPLITS = {"imagenette": (9469, 3925), "imagewoof": (9025, 3929), "cifar10": (50000, 10000)}
#: the sets of one IPC target: the random subset, d4m and the three refinements
SETS = ["random", "d4m", "conf", "sim", "conf_sim"]
#: H200 rates (bench/measurements/gpu_nvidia-h200.md, 2026-12-04, one job at a time): an IPC-10
#: step, host-bound, 16.7-25.6 ms whatever the model (ResNet-18 profiled: 5.9 ms of GPU work);
#: ResNet-18 (this project's, batch norm) training at 256 px, 4,600 img/s on the full train split
STEP_S = (0.0167, 0.0256)
MEASURED_RESNET18_256_IMG_S = 4600


def train_flops(model: torch.nn.Module, size: int, batch: int = 2) -> float:
    """Forward + backward FLOPs per image."""
    x = torch.randn(batch, 3, size, size)
    y = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def test_flops(model: torch.nn.Module, size: int, batch: int = 2) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(batch, 3, size, size))
    return counter.get_total_flops() / batch


def evaluation_of(dataset: str, overlay: Path | None) -> dict:
    """The dataset's evaluation section as the workflow fills it (the overlay merged, the preset applied)."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config" / f"{dataset}.yaml").read_text())
    if overlay:
        update_config(config, {"datasets": {dataset: yaml.safe_load(overlay.read_text())["datasets"][dataset]}})
    protocols.apply(config)
    return config["datasets"][dataset]


def count(dataset: str, ipc: int, overlay: Path | None, num_classes: int = 10) -> dict:
    entry = evaluation_of(dataset, overlay)
    evaluation = entry["evaluation"]
    train_images, test_images = SPLITS[dataset]
    size = evaluation["image_size"]
    rows = []
    for name in evaluation["models"]:
        model = evaluation_model(evaluation, name, num_classes)  # as the evaluation job builds it
        flops_train, flops_test = train_flops(model, size), test_flops(model, size)
        row = {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
               "train_gflop_per_image": flops_train / 1e9, "test_gflop_per_image": flops_test / 1e9}
        for kind, run_ipc, images in (("ipc", ipc, ipc * num_classes), ("full", None, train_images)):
            epochs = epochs_for(evaluation, run_ipc, name)
            batch = min(batch_size_for(evaluation, run_ipc), images)
            measured = measured_epochs(evaluation, epochs) if evaluation.get("report_best_epoch") else None
            # the final epoch is always tested; with report_best_epoch also the measured epochs
            passes = sum(1 for e in range(1, epochs + 1) if e == epochs or (measured is not None and measured(e)))
            runs = len(SETS) * len(evaluation["seeds"]) if kind == "ipc" else len(evaluation["seeds"])
            row[kind] = {"epochs": epochs, "batch": batch, "runs": runs, "steps": runs * epochs * math.ceil(images / batch),
                         "trained_images": runs * epochs * images, "test_passes": runs * passes,
                         "tested_images": runs * passes * test_images}
        rows.append(row)
    detector = entry["detector"]
    return {"dataset": dataset, "ipc": ipc, "protocol": evaluation.get("protocol", "default"),
            "overlay": str(overlay.relative_to(REPO)) if overlay else None, "crop_size": size,
            "detector": {"model": detector["model"], "architecture": detector.get("architecture", "detdistill"),
                         "epochs": detector["train"]["epochs"], "weights": detector.get("weights")},
            "models": rows}


def projected_seconds(counted: dict, gflop_s: float) -> dict:
    """Per model: the IPC runs at the measured host-bound step time (a range) or their FLOPs at
    the measured rate, whichever is longer, plus their test passes at that rate; the full-data runs
    at the rate."""
    out = {}
    for row in counted["models"]:
        ipc, full = row["ipc"], row["full"]
        gpu_ipc = ipc["trained_images"] * row["train_gflop_per_image"] / gflop_s
        tests = (ipc["tested_images"] * row["test_gflop_per_image"]) / gflop_s
        out[row["model"]] = {
            "ipc_training_s": [max(ipc["steps"] * s, gpu_ipc) for s in STEP_S],
            "ipc_test_passes_s": tests,
            "full_s": (full["trained_images"] * row["train_gflop_per_image"] + full["tested_images"] * row["test_gflop_per_image"]) / gflop_s,
        }
    return out


def markdown(report: dict) -> str:
    lines = [f"# Evaluation cost of `results/{report['dataset']}_ipc{report['ipc']}.csv`: published protocol against the project's own",
             "", f"Counted on {report['machine']} with `{report['command']}` (torch {report['torch']}); FLOPs by torch's "
             "FlopCounterMode, forward + backward per trained image, forward per test image, at the protocol's crop size.", ""]
    for key, counted in report["protocols"].items():
        lines += [f"## {key}: protocol `{counted['protocol']}`" + (f" (overlay `{counted['overlay']}`)" if counted["overlay"] else ""), "",
                  "| model | parameters | train GFLOP/img | test GFLOP/img | IPC runs x epochs | IPC test passes | full-data epochs | full-data test passes |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in counted["models"]:
            lines.append(f"| {row['model']} | {row['parameters']:,} | {row['train_gflop_per_image']:.2f} | {row['test_gflop_per_image']:.2f} | "
                         f"{row['ipc']['runs']} x {row['ipc']['epochs']} | {row['ipc']['test_passes']:,} | {row['full']['epochs']} | {row['full']['test_passes']:,} |")
        lines += ["", f"Detector: {counted['detector']['model']} ({counted['detector']['architecture']}), "
                  + ("loaded from a file" if counted["detector"]["weights"] else f"{counted['detector']['epochs']} epochs"), ""]
    lines += ["## Projected on one H200 (not measured)", "",
              f"The rate: this project's ResNet-18 trained at {MEASURED_RESNET18_256_IMG_S:,} img/s at 256 px on an H200 "
              f"(= {report['gflop_s']:,.0f} GFLOP/s by the count above); an IPC-{report['ipc']} step is host-bound at "
              f"{STEP_S[0] * 1e3:.1f}-{STEP_S[1] * 1e3:.1f} ms (both bench/measurements/gpu_nvidia-h200.md, 2026-12-04, one job at a time). "
              "Each IPC run: the longer of its steps at that step time and its FLOPs at the rate; test passes and full-data runs at the rate. "
              "One job at a time; overlapping jobs (`--resources gpu=N`) and CUDA graphs change it. The instance-norm models "
              "(GroupNorm(C, C): ResNetAP-10, ConvNet, Minimax's ResNet-18) trained slower than their FLOPs at this rate on the "
              "same GPU (this project's ResNetAP-10: 2,500 img/s at 256 px), so their rows are lower bounds.", "",
              "| protocol | model | IPC runs, training | IPC runs, test passes | full-data runs |", "|---|---|---|---|---|"]
    for key, projected in report["projected_s"].items():
        for model, p in projected.items():
            lines.append(f"| {key} | {model} | {p['ipc_training_s'][0] / 60:.0f}-{p['ipc_training_s'][1] / 60:.0f} min | "
                         f"{p['ipc_test_passes_s'] / 60:.1f} min | {p['full_s'] / 60:.0f} min |")
    for key, total in report["projected_total_min"].items():
        lines += ["", f"**{key}, evaluations of the IPC sets: {total['ipc'][0]:.0f}-{total['ipc'][1]:.0f} min projected; "
                  f"full-data rows {total['full']:.0f} min projected** (one job at a time)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="imagenette", choices=sorted(SPLITS))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True, help="OUT.json and OUT.md are written")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    report = {"dataset": args.dataset, "ipc": args.ipc, "machine": cpu_description(), "torch": torch.__version__,
              "command": "python bench/protocol_cost.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "protocols": {"published": count(args.dataset, args.ipc, None),
                            "own (config/default_protocol.yaml)": count(args.dataset, args.ipc, REPO / "config" / "default_protocol.yaml")}}
    reference = build_model("resnet18", 10, 256)
    report["gflop_s"] = train_flops(reference, 256) / 1e9 * MEASURED_RESNET18_256_IMG_S
    report["projected_s"] = {key: projected_seconds(counted, report["gflop_s"]) for key, counted in report["protocols"].items()}
    report["projected_total_min"] = {
        key: {"ipc": [sum(p["ipc_training_s"][i] + p["ipc_test_passes_s"] for p in projected.values()) / 60 for i in (0, 1)],
              "full": sum(p["full_s"] for p in projected.values()) / 60}
        for key, projected in report["projected_s"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(copy.deepcopy(report), indent=1, sort_keys=True) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
