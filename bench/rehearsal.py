#!/usr/bin/env python
"""Rehearse the paper's ImageNette target at a fraction of its epochs and project the full run.

One command builds an ImageNette-shaped dataset (the imagenette2 folder layout, the 10 wnids of
resources/classes/imagenette.csv, imagenette2's per-class counts of its 9,469 train / 3,925 val
images, 256 px JPEGs with class-dependent synthetic pixels) and a Stable-Diffusion-v1.5-shaped generator
(the published UNet, VAE and CLIP text encoder configs, random fp16 weights, a character-level
tokenizer, saved as a local diffusers folder like the real model), then runs the real workflow
target `results/rehearsal_ipc10.csv` through Snakemake with config/imagenette.yaml's settings and
every training's epochs multiplied by `--epoch-scale`. The shapes are the paper's, so every stage
does the paper's work per image and per epoch; only the epochs are fewer.

From Snakemake's `benchmarks/<rule>/*.tsv` and the run's artifacts it writes, per stage, the jobs,
wall seconds, images processed and images/s, and the time projected at the paper's epochs:

* a training job's time is a fixed part (process start, imports, CUDA, reading the images, test
  passes) plus a part proportional to its epochs. The fixed part is measured, not guessed: the
  same training jobs are also run at 1 epoch (a calibration dataset `rehearsal1ep`), and the two
  points (1 epoch, the rehearsal's epochs) give per job kind the seconds per epoch c and the fixed
  part F = wall(1 epoch) - c. Projected = F + (wall - F) x paper epochs / rehearsal epochs.
  The calibration runs after the target, so that a --deadline cuts it rather than the target.
* generation, encoding and the other stages already do the paper's work: projected as measured.

Writes bench/measurements/rehearsal_<device>.json and .md (`--out-dir`). `--tiny` is a CPU smoke
test of the whole path (2 classes, a few 32 px images, a tiny SD-shaped model): not a benchmark.
The parts live in detdistill.testing (fake_data, sd_shapes, workflow_run, rehearsal), where
tests/test_rehearsal.py imports them.

    python bench/rehearsal.py                          # on a GPU machine (see bench/README.md)
    python bench/rehearsal.py --tiny --cores 2 --gpus 2  # CPU smoke test, a few minutes
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from detdistill.testing.fake_data import IMAGENETTE2_COUNTS, imagenette_like
from detdistill.testing.machine import machine, versions
from detdistill.testing.rehearsal import (
    CALIBRATION,
    CLASSES_FILE,
    DATASET,
    TARGET,
    TINY_CLASSES,
    TINY_COUNTS,
    TINY_SIZE,
    calibration_settings,
    calibration_targets,
    markdown,
    measure,
    paper_settings,
    plain,
    rehearsal_settings,
    write_logs_archive,
)
from detdistill.testing.sd_shapes import build_sd15_shaped
from detdistill.testing.workflow_run import STOP_GRACE_S, copy_workflow, run_snakemake
from detdistill.train import COMPILE_WORDS

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "config" / "imagenette.yaml"
#: with --deadline: seconds kept for the calibration run after the main one, and for the report
CALIBRATION_RESERVE_S, REPORT_RESERVE_S = 120, 30

log = logging.getLogger("rehearsal")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: 2 classes, 12+4 images each at 32 px, tiny SD-shaped model")
    ap.add_argument("--epoch-scale", type=float, default=None, help="factor on every training's epochs (default 0.01; --tiny 0.001)")
    ap.add_argument("--workdir", type=Path, default=REPO / "data" / "rehearsal",
                    help="dataset, weights (both cached) and the run (ignored by git)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "measurements", help="where rehearsal_<device>.json/.md go")
    ap.add_argument("--cores", type=int, default=1, help="snakemake --cores (the README's GPU command: 1)")
    ap.add_argument("--gpus", type=int, default=1, help="snakemake --resources gpu=N (jobs declaring gpu=1 at once)")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds for the whole command; the runs are stopped in time to write the report")
    ap.add_argument("--skip-calibration", action="store_true", help="no 1-epoch jobs: nothing subtracted before scaling (an upper bound)")
    ap.add_argument("--prepare-only", action="store_true", help="build the dataset, weights and config, then stop")
    ap.add_argument("--logs-archive", type=Path, default=None, help="also write the run's logs and benchmark files as a .tar.gz")
    ap.add_argument("--workers", type=int, default=None, help="processes writing the dataset (default: all cores)")
    ap.add_argument("--train-compile", choices=list(COMPILE_WORDS), default=None,
                    help="train.compile for every training (default: config/imagenette.yaml's)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    started = time.perf_counter()
    scale = args.epoch_scale or (0.001 if args.tiny else 0.01)
    suffix = "-tiny" if args.tiny else ""
    workdir = args.workdir.resolve()

    wnids = pd.read_csv(REPO / CLASSES_FILE, dtype=str).wnid.tolist()
    if args.tiny:
        wnids, counts, size = wnids[:TINY_CLASSES], [TINY_COUNTS] * TINY_CLASSES, TINY_SIZE
    else:
        counts, size = IMAGENETTE2_COUNTS, 256
    dataset = imagenette_like(workdir / f"imagenette2{suffix}", wnids, counts, size, workers=args.workers)
    generator = build_sd15_shaped(workdir / f"sd15-shaped{suffix}", args.tiny)
    paper = paper_settings(PAPER_CONFIG)
    settings = rehearsal_settings(paper, workdir / f"imagenette2{suffix}", workdir / f"sd15-shaped{suffix}", scale,
                                  wnids if args.tiny else None,
                                  None if args.train_compile is None else COMPILE_WORDS[args.train_compile])
    calibration = calibration_settings(settings)
    run_dir = copy_workflow(REPO, workdir / "run")
    (run_dir / "rehearsal.yaml").write_text(yaml.safe_dump({"datasets": {DATASET: settings, CALIBRATION: calibration}}, sort_keys=False))
    prepare_s = time.perf_counter() - started
    log.info("prepared in %.0f s: config %s", prepare_s, run_dir / "rehearsal.yaml")
    if args.prepare_only:
        return {}

    def budget(reserve: float = 0.0) -> float | None:
        if args.deadline is None:
            return None
        return max(30.0, args.deadline - (time.perf_counter() - started) - REPORT_RESERVE_S - STOP_GRACE_S - reserve)

    # the main run first: its time is the rehearsal's answer; a calibration cut short by the
    # deadline leaves some job kinds without a fitted fixed part (they are then scaled whole)
    reserve = 0.0 if args.skip_calibration else CALIBRATION_RESERVE_S
    runs = {"main": run_snakemake(run_dir, [TARGET], args.cores, args.gpus, run_dir / "snakemake_main.log",
                                  budget(reserve), "rehearsal.yaml"),
            "calibration": None}
    if not args.skip_calibration:
        runs["calibration"] = run_snakemake(run_dir, calibration_targets(settings), args.cores, args.gpus,
                                           run_dir / "snakemake_calibration.log", budget(), "rehearsal.yaml")

    device, slug = machine()
    serial = args.cores == 1  # jobs one at a time: their walls add up to the run
    models = settings["evaluation"]["models"]
    report = {
        "what": "rehearsal of results/imagenette_ipc10.csv: ImageNette-shaped data, SD-v1.5-shaped random weights, "
                "config/imagenette.yaml's settings at a fraction of the epochs; stage times measured, paper-epoch times projected",
        "tiny": args.tiny,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": device,
        "versions": versions(),
        "command": shlex.join(["python", "bench/rehearsal.py", *(sys.argv[1:] if argv is None else argv)]),
        "epoch_scale": scale,
        "dataset": {**dataset, "train_images": sum(c[0] for c in dataset["counts"]), "val_images": sum(c[1] for c in dataset["counts"])},
        "generator": {k: generator[k] for k in ("dtype", "tokenizer", "weights")},
        "prepare_s": prepare_s,
        "runs": runs,
        "config": {DATASET: settings, CALIBRATION: calibration},
        "serial": serial,
        **measure(run_dir, paper, models, runs["main"], serial),
    }
    name = f"rehearsal_{slug}{'_tiny' if args.tiny else ''}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(report, indent=2, default=plain) + "\n")
    text = markdown(report)
    (args.out_dir / f"{name}.md").write_text(text)
    if args.logs_archive:
        write_logs_archive(args.logs_archive, run_dir)
    print(text)
    log.info("written: %s.json and .md in %s (%.0f s in all)", name, args.out_dir, time.perf_counter() - started)
    if runs["main"]["returncode"] and not runs["main"]["stopped_by_budget"]:
        raise SystemExit(f"snakemake failed: see {run_dir / 'snakemake_main.log'} and {run_dir / 'logs'}")
    return report


if __name__ == "__main__":
    main()
