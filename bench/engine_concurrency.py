#!/usr/bin/env python
"""Several IPC-10 trainings at once on one device: the optimizer steps per second that N worker
processes reach together, against one alone.

An IPC-10 step is bound by kernel launches from the host (bench/measurements/gpu_nvidia-h200.md:
5.9 ms of GPU work in a 16.7 ms ResNet-18 step), so trainings in separate processes, as Snakemake
runs them with `--resources gpu=N`, should overlap on one GPU. The H200 rehearsal saw ~2.3x with 6
evaluation jobs, but in one wave with other jobs beside it; this script measures it cleanly:

* for each N in --workers, N processes each build the model and a random uint8 IPC-10 set (100
  images, the imagenette preset's Minimax protocol: 224 px crops of 256, batch 64, kornia
  augmentation, CutMix), train one warm-up epoch (CUDA start, cuDNN autotuning, compilation), then
  wait at a barrier; released together, each trains --epochs epochs and reports its own start, end
  and steps (wall-clock times, synchronised with the device);
* per N: the steps of all workers over the span from the first start to the last end (aggregate
  steps/s), each worker's ms per step, and the speed-up over N = 1.

    python bench/engine_concurrency.py --workers 1,2,4,6,8 --out bench/measurements/engine_concurrency_<gpu>.json
    python bench/engine_concurrency.py --workers 1,2,4,6 --compile cuda-graphs   # with CUDA graphs
    python bench/engine_concurrency.py --tiny --device cpu --workers 1,2          # smoke test

Writes JSON (machine, versions, command, figures) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from detdistill.testing.engine import PRESETS, build_models, report_header, steps_per_epoch, sync, write_report
from detdistill.train import COMPILE_WORDS, EngineOptions, TrainConfig, train_classifiers


def shapes(tiny: bool) -> tuple[dict, int, int, int]:
    """The imagenette preset's training settings, load size, crop size and width (tiny: 36/32/8)."""
    train_cfg, load, crop, width, _ = PRESETS["imagenette"]
    return (train_cfg, 36, 32, 8) if tiny else (train_cfg, load, crop, width)


def worker(args: argparse.Namespace) -> None:
    """One training process: warm up, say "ready", wait for "go" on stdin, train, print the times."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train_cfg, load, crop, width = shapes(args.tiny)
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (args.images, 3, load, load), dtype=torch.uint8, generator=g)
    labels = torch.arange(args.images) % 10
    base = {**train_cfg, "crop_size": crop, "compile": COMPILE_WORDS[args.compile]}
    models = build_models(args.model, [args.seed], crop, width)
    train_classifiers(models, [args.seed], images, labels, TrainConfig.from_dict({**base, "epochs": 1}), device, EngineOptions(stack="off"))
    sync(device)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("engine_concurrency worker: no go")
    cfg = TrainConfig.from_dict({**base, "epochs": args.epochs, "seed": args.seed})
    models = build_models(args.model, [args.seed], crop, width)
    start = time.time()
    train_classifiers(models, [args.seed], images, labels, cfg, device, EngineOptions(stack="off"))
    sync(device)
    end = time.time()
    steps = args.epochs * steps_per_epoch(args.images, cfg.batch_size)
    print(json.dumps({"start": start, "end": end, "steps": steps}), flush=True)


def run_group(n: int, args: argparse.Namespace) -> dict:
    """N workers released together; their steps over the span from the first start to the last end."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--device", args.device, "--model", args.model,
           "--epochs", str(args.epochs), "--images", str(args.images), "--compile", args.compile,
           "--threads", str(args.threads), *(["--tiny"] if args.tiny else [])]
    procs = [subprocess.Popen([*cmd, "--seed", str(i)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(n)]
    try:
        for proc in procs:  # the barrier: every worker warmed up
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise SystemExit(f"engine_concurrency: a worker did not warm up (said {line!r}; exit {proc.wait()})")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.stdout.readline()) for proc in procs]
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait()
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    steps = sum(r["steps"] for r in results)
    per_worker = [1000 * (r["end"] - r["start"]) / r["steps"] for r in results]
    return {"workers": n, "steps": steps, "span_s": round(span, 3), "steps_per_s": round(steps / span, 2),
            "ms_per_step_per_worker": [round(ms, 2) for ms in per_worker]}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="32 px from 36, width 8: a smoke test")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--workers", default="1,2,4,6", help="comma-separated process counts, each run in turn")
    parser.add_argument("--epochs", type=int, default=50, help="timed epochs per worker (2 steps each at IPC 10)")
    parser.add_argument("--images", type=int, default=100, help="the set's size (IPC 10 x 10 classes)")
    parser.add_argument("--compile", choices=list(COMPILE_WORDS), default="false", help="train.compile of every worker")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return None
    counts = [int(n) for n in args.workers.split(",")]
    rows = []
    for n in counts:
        row = run_group(n, args)
        rows.append(row)
        print(f"{n:2d} workers: {row['steps_per_s']:8.1f} steps/s together, ms per step per worker "
              f"{row['ms_per_step_per_worker']}", flush=True)
    alone = next((r["steps_per_s"] for r in rows if r["workers"] == 1), None)
    for row in rows:
        row["speed_up_over_one"] = round(row["steps_per_s"] / alone, 2) if alone else None
    device = torch.device(args.device)
    report = {
        **report_header("engine_concurrency.py", argv, device),
        "model": args.model, "compile": args.compile, "tiny": args.tiny, "images": args.images,
        "epochs_timed": args.epochs, "threads_per_worker": args.threads, "rows": rows,
    }
    if args.out:
        lines = write_report(args.out, report, "Concurrent IPC-10 trainings",
                             f"{args.model}, {args.images} images, {args.epochs} timed epochs per worker after a warm-up "
                             f"epoch, train.compile {args.compile}, {args.threads} CPU thread(s) per worker.")
        lines += ["| workers | steps/s together | speed-up over one | ms per step, each worker |", "|---|---|---|---|"]
        lines += [f"| {r['workers']} | {r['steps_per_s']:.1f} | {r['speed_up_over_one'] or '-'} | "
                  f"{', '.join(f'{ms:.1f}' for ms in r['ms_per_step_per_worker'])} |" for r in rows]
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    main()
