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
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from detdistill.models import build_model  # noqa: E402
from detdistill.train import TrainConfig, train_classifiers  # noqa: E402

from machine_info import cpu_description  # noqa: E402
from reference_train import train_classifier_reference  # noqa: E402

#: name -> (evaluation train config, load size, crop size, width, [(label, set size, models)])
PRESETS = {
    "digits": (
        dict(batch_size=32, optimizer="sgd", lr=0.01, schedule="multistep", cutmix_alpha=1.0,
             crop_scale=[0.5, 1.0], flip=False),
        16, 16, 32,
        [("ipc10", 100, ["convnet", "resnetap10", "resnet18"]), ("full", 1437, ["convnet"])],
    ),
    "imagenette": (
        dict(batch_size=64, optimizer="sgd", lr=0.01, schedule="multistep", cutmix_alpha=1.0,
             crop_scale=[0.5, 1.0], color_jitter=0.4, flip=True),
        256, 224, 64,
        [("ipc10", 100, ["resnetap10", "convnet", "resnet18"]), ("full", 9469, ["resnet18"])],
    ),
}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of `images` (the engine's last batch may be short)."""
    return -(-images // min(batch_size, images))


def report_header(script: str, argv: list[str] | None, device: torch.device) -> dict:
    """What every engine benchmark's JSON starts with: the command as typed (quoted), the date, the
    device (the GPU's name, or the CPU with torch's thread count) and the library versions."""
    import kornia

    return {
        "command": shlex.join(["python", f"bench/{script}", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"CPU ({cpu_description()}; {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "kornia": kornia.__version__,
    }


def write_report(out: Path, report: dict, title: str, what: str) -> list[str]:
    """Write `report` as JSON to `out`; return the first lines of its markdown (title, command,
    date, versions and `what` was measured), for the caller's tables to follow."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return [f"# {title}: {report['device']}", "",
            f"`{report['command']}` ({report['date']}; torch {report['torch']}, kornia {report['kornia']}); {what}", ""]


def _models(name, seeds, crop, width):
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        out.append(build_model(name, 10, crop, width))
    return out


def time_path(path, name, images, labels, cfg, crop, width, seeds, device) -> float:
    """Seconds for one whole training of every seed along `path` (after a one-epoch warm-up)."""
    def run(c):
        models = _models(name, seeds, crop, width)
        if path == "reference":
            for seed, model in zip(seeds, models):
                train_classifier_reference(model, images, labels, TrainConfig(**{**c.__dict__, "seed": seed}), device)
        else:
            stack = "off" if path == "engine" else "on"
            train_classifiers(models, seeds, images, labels, c, device, stack=stack)

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
