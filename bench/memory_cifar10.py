#!/usr/bin/env python
"""Peak memory of every workflow stage on CIFAR-10's 50,000 training images (CPU).

Runs `results/cifar10_ipc10.csv` through Snakemake, in a fresh copy of the workflow under
`--workdir`, with config/bench/cifar10_embedded.yaml (the CPU CIFAR-10 setting: the workflow-trained
embedded generator) on the real images of ../shared/data/cifar10-jpeg.tar.gz, and every training
cut to its minimum (1 epoch, 10 generator steps, 10 sampling steps). Memory does not depend on
those counts: a stage's peak is its resident data (the images it loads, the latents, the models)
plus one batch's work, and more epochs or steps only repeat the same batches. What is kept at full
size is what memory does depend on: all 50k train and 10k test images, the image sizes, models,
batch sizes and candidate counts, and one synthesis / candidates job for all classes
(`classes_per_job: 0`, the largest job). Two cuts for time on a shared 2-core machine, both
accounted for in the report: one evaluation seed instead of three (on the CPU the seeds' runs
train in turn, so the other two add only their models' parameters: `seed_model_mib`), and one
thread per job (every rule declares one; threads do not change what a job holds).

Per job it reads two peak figures: Snakemake's `benchmark:` max_rss (psutil samples of the job's
process tree: every 0.5 s for its first 15 s, then every 30 s, so a short peak can be missed) and
the kernel's high-water mark of the job's process (Linux VmHWM, exact), which every job
writes as the last line of its log (detdistill.workflow.setup). Writes
bench/measurements/memory_cifar10.json and .md: per rule the jobs, both peaks, the largest job,
and whether it stays under 4 GiB; the machine, versions and command; and the projected resident
images of the same stages at ImageNette's size.

    nice -n 10 python bench/memory_cifar10.py          # about 30-40 min on 2 cores
    python bench/memory_cifar10.py --report-only       # rewrite the report from a finished run
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import yaml

from detdistill.testing.machine import machine, versions
from detdistill.testing.memory import (
    DATASET,
    LIMIT_MIB,
    markdown,
    memory_jobs,
    memory_settings,
    projection,
    rule_table,
    with_config_seeds,
)
from detdistill.testing.workflow_run import copy_workflow, run_snakemake

log = logging.getLogger("memory")

REPO = Path(__file__).resolve().parents[1]
IPCS = (10,)
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
BENCH_CONFIG = REPO / "config" / "bench" / "cifar10_embedded.yaml"


def unpack_cifar10(dest: Path) -> Path:
    """The JPEG tree at dest/cifar10 (train/<class>/, test/<class>/), unpacked once."""
    root = dest / "cifar10"
    if not (root / "test").is_dir():
        if not ARCHIVE.is_file():
            raise SystemExit(f"missing {ARCHIVE}: this benchmark needs the shared CIFAR-10 archive (see ../shared/data/README.md)")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(dest, filter="data")
    return root


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=REPO / "data" / "memory", help="the unpacked images and the run (ignored by git)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "measurements")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--report-only", action="store_true", help="no run: report the finished run in --workdir")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    workdir = args.workdir.resolve()
    run_dir = workdir / "run"
    targets = [f"results/{DATASET}_ipc{ipc}.csv" for ipc in IPCS]
    if args.report_only:
        run = json.loads((run_dir / "run.json").read_text())
    else:
        data_root = unpack_cifar10(workdir)
        copy_workflow(REPO, run_dir)
        bench_settings = yaml.safe_load(BENCH_CONFIG.read_text())["datasets"][DATASET]
        settings = memory_settings(bench_settings, data_root)
        (run_dir / "memory.yaml").write_text(yaml.safe_dump({"datasets": {DATASET: settings}}, sort_keys=False))
        started = time.perf_counter()
        # --resources gpu=N: every job declares gpu=1; the CPU runs as many as cores
        run = run_snakemake(run_dir, targets, args.cores, args.cores, run_dir / "snakemake.log", None, "memory.yaml")
        run["seconds"] = time.perf_counter() - started
        run["command_line"] = shlex.join(["python", "bench/memory_cifar10.py", *(sys.argv[1:] if argv is None else argv)])
        (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    settings = yaml.safe_load((run_dir / "memory.yaml").read_text())["datasets"][DATASET]
    manifest = pd.read_parquet(run_dir / "results" / DATASET / "data" / "manifest.parquet", columns=["split", "label"])
    config_seeds = len(yaml.safe_load(BENCH_CONFIG.read_text())["datasets"][DATASET]["evaluation"]["seeds"])
    jobs = with_config_seeds(memory_jobs(run_dir), settings, manifest.label.nunique(), config_seeds)
    rules = rule_table(jobs)
    counts = manifest.split.value_counts().to_dict()
    cifar_counts = {"train": counts["train"], "test": counts["test"], "image_size": settings["image_size"],
                    "eval_load_size": settings["evaluation"].get("load_size") or settings["evaluation"]["image_size"]}
    report = {
        "what": "peak RSS of every workflow stage on CIFAR-10's 50k training images, CPU, minimal epochs",
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "machine": machine()[0],
        "versions": versions(),
        "command": run["command_line"],
        "run": {k: run[k] for k in ("command", "seconds", "returncode")},
        "data": {"train": counts["train"], "test": counts["test"]},
        "config": settings,
        "limit_mib": LIMIT_MIB,
        "rules": rules.to_dict(orient="records"),
        "jobs": jobs.to_dict(orient="records"),
        "imagenette_projection": projection(rules, cifar_counts),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "memory_cifar10.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (args.out_dir / "memory_cifar10.md").write_text(text)
    print(text)
    if run["returncode"]:
        raise SystemExit(f"snakemake failed (exit {run['returncode']}): see {run_dir / 'snakemake.log'} and {run_dir / 'logs'}")
    return report


if __name__ == "__main__":
    main()
