#!/usr/bin/env python
"""Where a training step of an IPC-10 set goes: the engine's step time with parts of the protocol
taken away, the augmentation and CutMix alone, and a profiler table.

On one H200 (bench/measurements/gpu_nvidia-h200.md) an IPC-10 set trained at ~23.5 epochs/s per
run (about 21 ms per step of 64 images at 224 px) for the ConvNet, ResNetAP-10 and ResNet-18 alike,
and stacking the seeds was no faster: the step looked bound by per-run work, not by the model. This
script answers which work, in one short device call:

* per model, ms per step for the configured protocol (RandomResizedCrop + ColorJitter + flip by
  kornia, CutMix), without colour jitter, and without any augmentation or CutMix (a centre crop
  only); each from the difference of a long and a short training (so set-up is left out), one run;
* the kornia pipeline alone and CutMix alone on one batch (ms per call);
* torch.profiler over a few epochs of the protocol: the top operations by self CPU time (and by
  self device time on CUDA).

    python bench/engine_profile.py --out bench/measurements/engine_profile_<gpu>.json   # GPU: Minimax shapes
    python bench/engine_profile.py --tiny --device cpu                                    # smoke test

Writes JSON (machine, versions, command, figures) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from detdistill.augment import build_augment
from detdistill.testing.engine import (
    DEFAULT_VARIANTS,
    PRESETS,
    VARIANTS,
    build_models,
    parse_variants,
    report_header,
    steps_per_epoch,
    sync,
    write_report,
)
from detdistill.train import EngineOptions, TrainConfig, train_classifiers


def _train_seconds(name, images, labels, cfg, crop, width, device) -> float:
    models = build_models(name, [0], crop, width)
    sync(device)
    start = time.perf_counter()
    train_classifiers(models, [0], images, labels, cfg, device, EngineOptions(stack="off"))
    sync(device)
    return time.perf_counter() - start


def step_ms(name, images, labels, cfg, crop, width, device, short: int, long: int) -> float:
    """ms per optimizer step of one run: (long training - short training) / the steps between, so
    model building, the transfer of the images and the first epoch's warm-up cancel out."""
    steps = steps_per_epoch(len(images), cfg.batch_size)
    _train_seconds(name, images, labels, TrainConfig(**{**cfg.__dict__, "epochs": 1}), crop, width, device)  # warm-up
    t_short = _train_seconds(name, images, labels, TrainConfig(**{**cfg.__dict__, "epochs": short}), crop, width, device)
    t_long = _train_seconds(name, images, labels, TrainConfig(**{**cfg.__dict__, "epochs": long}), crop, width, device)
    return 1000 * (t_long - t_short) / ((long - short) * steps)


def ops_per_step(name, images, labels, cfg, crop, width, device, short: int, long: int) -> float:
    """Tensor operations dispatched per optimizer step of one run (the long training's count less
    the short one's, over the steps between): a device-independent measure of host work, since on
    a GPU each is at least one kernel launch from the host (CPU-side parameter draws included)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    counts = []
    for epochs in (short, long):
        models = build_models(name, [0], crop, width)
        Count.calls = 0
        with Count():
            train_classifiers(models, [0], images, labels, TrainConfig(**{**cfg.__dict__, "epochs": epochs}), device, EngineOptions(stack="off"))
        counts.append(Count.calls)
    steps = steps_per_epoch(len(images), cfg.batch_size)
    return (counts[1] - counts[0]) / ((long - short) * steps)


def call_ms(fn, device, repeats: int) -> float:
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return 1000 * (time.perf_counter() - start) / repeats


def profile_table(name, images, labels, cfg, crop, width, device, epochs: int, rows: int) -> dict[str, str]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    models = build_models(name, [0], crop, width)
    train_classifiers(models, [0], images, labels, TrainConfig(**{**cfg.__dict__, "epochs": 1}), device, EngineOptions(stack="off"))
    with profile(activities=activities) as prof:
        train_classifiers(models, [0], images, labels, TrainConfig(**{**cfg.__dict__, "epochs": epochs}), device, EngineOptions(stack="off"))
        sync(device)
    averages = prof.key_averages()
    tables = {"self CPU": averages.table(sort_by="self_cpu_time_total", row_limit=rows)}
    if device.type == "cuda":
        tables["self device"] = averages.table(sort_by="self_cuda_time_total", row_limit=rows)
    return tables


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="32 px from 36, width 8, few epochs: a smoke test")
    parser.add_argument("--models", default="convnet,resnetap10,resnet18")
    parser.add_argument("--images", type=int, default=100, help="the set's size (IPC 10 x 10 classes)")
    parser.add_argument("--epochs", type=int, nargs=2, default=[5, 25], metavar=("SHORT", "LONG"),
                        help="the two trainings whose difference is timed")
    parser.add_argument("--profile-model", default="resnet18")
    parser.add_argument("--profile-epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, help="JSON result; the markdown goes beside it (.md)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of: {'; '.join(VARIANTS)} (names may hold commas: matched whole)")
    parser.add_argument("--no-parts", dest="parts", action="store_false",
                        help="skip timing the kornia pipeline and CutMix alone")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the profiler table")
    parser.add_argument("--no-compiled-augment", dest="compiled_augment", action="store_false",
                        help="skip timing the kornia pipeline through torch.compile (its compilation takes 30-60 s)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train_cfg, load, crop, width, _ = PRESETS["imagenette"]
    if args.tiny:
        load, crop, width = 36, 32, 8
    short, long = (1, 3) if args.tiny else args.epochs
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, load, load), dtype=torch.uint8, generator=g)
    labels = torch.arange(args.images) % 10
    base = {**train_cfg, "crop_size": crop}
    models = args.models.split(",")

    try:
        variants = parse_variants(args.variants)
    except ValueError as exc:
        parser.error(str(exc))
    steps = []
    for name in models:
        for variant in variants:
            cfg = TrainConfig.from_dict({**base, **VARIANTS[variant]})
            start = time.perf_counter()
            ms = step_ms(name, images, labels, cfg, crop, width, device, short, long)
            seconds = time.perf_counter() - start
            # a compiled step's operations run inside generated kernels, not the dispatcher: not counted
            ops = None if cfg.compile else round(ops_per_step(name, images, labels, cfg, crop, width, device, 1, 2))
            steps.append({"model": name, "variant": variant, "ms_per_step": round(ms, 2), "ops_per_step": ops,
                          "seconds_with_warm_up": round(seconds, 1)})
            print(f"{name:12s} {variant:28s} {ms:8.2f} ms per step, {ops if ops is not None else '-':>6} tensor "
                  f"operations ({seconds:.0f} s with the warm-up)", flush=True)

    cfg = TrainConfig.from_dict(base)
    batch = images[: cfg.batch_size].to(device).float() / 255
    augment = build_augment(load, crop_scale=cfg.crop_scale, crop_size=crop, color_jitter=cfg.color_jitter, flip=cfg.flip)
    jitterless = build_augment(load, crop_scale=cfg.crop_scale, crop_size=crop, color_jitter=0.0, flip=cfg.flip)
    from torchvision.transforms import v2

    cutmix = v2.CutMix(num_classes=10, alpha=cfg.cutmix_alpha)
    cropped = augment(batch)
    batch_labels = labels[: cfg.batch_size].to(device)
    repeats = 5 if args.tiny else 50
    parts = {
        "kornia pipeline (crop, jitter, flip)": call_ms(lambda: augment(batch), device, repeats),
        "kornia pipeline without jitter": call_ms(lambda: jitterless(batch), device, repeats),
        "CutMix": call_ms(lambda: cutmix(cropped, batch_labels), device, repeats),
    } if args.parts else {}
    if args.parts and args.compiled_augment:
        # the same pipeline through torch.compile (eager RNG semantics: fallback_random), timed
        # after its compilation; a failure is recorded, not fatal
        import torch._inductor.config as inductor_config

        inductor_config.fallback_random = True
        compiled = torch.compile(augment)
        try:
            start = time.perf_counter()
            compiled(batch)
            sync(device)
            parts["compile of the kornia pipeline (s, once)"] = time.perf_counter() - start
            parts["kornia pipeline, compiled"] = call_ms(lambda: compiled(batch), device, repeats)
        except Exception as exc:  # a measurement, not the workflow: recorded, and the rest goes on
            print(f"compiled augmentation failed: {type(exc).__name__}: {exc}", flush=True)
            parts["kornia pipeline, compiled (failed)"] = float("nan")
    for part, ms in parts.items():
        print(f"{part:40s} {ms:8.2f} ms per call of {len(batch)} images", flush=True)

    tables = profile_table(args.profile_model, images, labels, cfg, crop, width, device,
                           1 if args.tiny else args.profile_epochs, 15) if args.profile else {}
    report = {
        **report_header("engine_profile.py", argv, device),
        "tiny": args.tiny, "images": args.images, "load_size": load, "crop_size": crop, "width": width,
        "batch_size": cfg.batch_size, "epochs_timed": [short, long],
        "steps": steps, "parts_ms_per_call": {k: round(v, 3) for k, v in parts.items()},
        "profile": {"model": args.profile_model, "tables": tables},
    }
    if args.out:
        lines = write_report(args.out, report, "Engine step profile",
                             f"{args.images} images at {crop} px from {load}, batch {cfg.batch_size}, one run, ms per step "
                             f"from {long} - {short} epochs.")
        lines += ["| model | variant | ms per step | tensor operations per step |", "|---|---|---|---|"]
        lines += [f"| {s['model']} | {s['variant']} | {s['ms_per_step']:.2f} | {s['ops_per_step'] or '-'} |" for s in steps]
        if parts:
            lines += ["", "| part, alone | ms per call |", "|---|---|"]
            lines += [f"| {k} | {v:.2f} |" for k, v in parts.items()]
        for title, table in tables.items():
            lines += ["", f"## {args.profile_model}: top operations by {title} time", "", "```", table, "```"]
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    main()
