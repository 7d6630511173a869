#!/usr/bin/env python
"""Training throughput of the engine (detdistill.train.train_classifiers) against the loop it
replaced (bench/reference_train.py), on the shapes the workflow trains: whole trainings of a few
epochs on random uint8 images, several seeds, timed end to end (augmentation, CutMix, transfer,
optimizer), reported as trained images per second.

    python bench/engine_throughput.py --preset digits     # the digits default's evaluation shapes (CPU)
    python bench/engine_throughput.py --preset imagenette # Minimax at 224 from 256 px (GPU)

Paths: `reference` (per-image CPU torchvision augmentation, one run at a time, fp32), `engine`
(device augmentation, runs one by one; bf16 autocast + channels-last on CUDA), `engine-stacked`
(the runs of all seeds as one vmapped model), and on CUDA `engine-stacked-compiled`.
Writes JSON (machine, versions, command, figures) with --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from detdistill.testing.engine import PRESETS, build_models, report_header
from detdistill.train import EngineOptions, TrainConfig, train_classifiers

from reference_train import train_classifier_reference  # bench/reference_train.py, beside this script


def time_path(path, name, images, labels, cfg, crop, width, seeds, device) -> float:
    """Seconds for one whole training of every seed along `path` (after a one-epoch warm-up)."""
    def run(c):
        models = build_models(name, seeds, crop, width)
        if path == "reference":
            for seed, model in zip(seeds, models):
                train_classifier_reference(model, images, labels, TrainConfig(**{**c.__dict__, "seed": seed}), device)
        else:
            stack = "off" if path == "engine" else "on"
            train_classifiers(models, seeds, images, labels, c, device, EngineOptions(stack=stack))

    compile_model = path.endswith("compiled")
    run(TrainConfig(**{**cfg.__dict__, "epochs": 1, "compile": compile_model}))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(TrainConfig(**{**cfg.__dict__, "compile": compile_model}))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per training (IPC sets; full-data runs 1)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--paths", default="reference,engine,engine-stacked")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train_cfg, load, crop, width, shapes = PRESETS[args.preset]
    seeds = list(range(args.seeds))
    rows = []
    print("| set | model | images | path | s | img/s |\n|---|---|---|---|---|---|")
    for label, n, names in shapes:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 3, load, load), dtype=torch.uint8, generator=g)
        labels = torch.arange(n) % 10
        epochs = args.epochs if label != "full" else 1
        cfg = TrainConfig.from_dict({**train_cfg, "epochs": epochs, "crop_size": crop})
        for name in names:
            for path in args.paths.split(","):
                seconds = time_path(path, name, images, labels, cfg, crop, width, seeds, device)
                ips = n * epochs * len(seeds) / seconds
                rows.append({"set": label, "model": name, "images": n, "epochs": epochs, "seeds": len(seeds),
                             "path": path, "seconds": round(seconds, 3), "images_per_s": round(ips, 1)})
                print(f"| {label} | {name} | {n} | {path} | {seconds:.2f} | {ips:.0f} |", flush=True)
    if args.out:
        meta = {**report_header("engine_throughput.py", None, device), "preset": args.preset,
                "load_size": load, "crop_size": crop, "width": width}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
