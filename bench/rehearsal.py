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

    python bench/rehearsal.py                          # on a GPU machine (see bench/README.md)
    python bench/rehearsal.py --tiny --cores 2 --gpus 2  # CPU smoke test, a few minutes
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import datetime
import gc
import importlib.metadata
import json
import logging
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from detdistill.train import COMPILE_WORDS  # noqa: E402
from detdistill.workflow import PEAK_GPU_PATTERN  # noqa: E402

from machine_info import cpu_description  # noqa: E402
from stage_times import job_table  # noqa: E402

log = logging.getLogger("rehearsal")

DATASET = "rehearsal"
#: the same training jobs at 1 epoch: measures each job's fixed part
CALIBRATION = "rehearsal1ep"
IPC = 10
TARGET = f"results/{DATASET}_ipc{IPC}.csv"
PAPER_CONFIG = REPO / "config" / "imagenette.yaml"
PAPER_DATASET = "imagenette"
CLASSES_FILE = "resources/classes/imagenette.csv"
#: files copied into the run's work directory (the workflow as tests/conftest.copy_workflow copies it)
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "resources"]

#: imagenette2's (train, val) images per class, in the class table's order (fastai's imagenette2:
#: 9,469 train and 3,925 val images in all)
IMAGENETTE2_COUNTS = [(963, 387), (955, 395), (993, 357), (858, 386), (941, 409),
                      (956, 394), (961, 389), (931, 419), (951, 399), (960, 390)]
#: the smoke test's size: 2 classes with enough train images for IPC 10, one evaluation model
#: (the detector and judge still train the other two architectures)
TINY_CLASSES, TINY_COUNTS, TINY_SIZE, TINY_MODELS = 2, (12, 4), 32, ["convnet"]
#: the workflow's stages in pipeline order, for the tables (rules not listed follow, by name)
RULE_ORDER = ["prepare_data", "prepare_generator", "encode_latents", "compute_prototypes", "synthesize_initial",
              "train_classifier", "score_initial", "detect_anomalies", "generate_candidates", "build_refined_set",
              "select_random_subset", "evaluate", "evaluate_full", "label_consistency", "set_quality", "refinement_figures",
              "gradcam", "learning_curves", "aggregate_results"]
#: the rules that train classifiers: projected to the paper's epochs (the others are measured as they are)
TRAINING_RULES = ("train_classifier", "evaluate", "evaluate_full", "gradcam")
#: issue "Paper-scale speed": `results/imagenette_ipc10.csv` on one H100
TARGETS_S = {"without_full_data": 30 * 60, "full_data": 45 * 60}
#: the fewest rehearsal epochs of a training: the fixed part is fitted from 1 and this many
MIN_EPOCHS = 2
#: with --deadline: seconds kept for the calibration run after the main one, and for the report
CALIBRATION_RESERVE_S, REPORT_RESERVE_S = 120, 30
#: seconds between asking Snakemake to stop (it cancels its jobs) and killing it
STOP_GRACE_S = 20


# --------------------------------------------------------------------------- 1. dataset
def cached_build(folder: Path, params: dict, build, what: str) -> dict:
    """`build(staging)` into a fresh folder that then replaces `folder`, unless `folder` was built
    with the same `params` (a stamp file in it); an interrupted build leaves no half folder."""
    params = json.loads(json.dumps(params))  # as read back: lists, not tuples
    stamp = folder / "rehearsal_build.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        log.info("%s: %s already built", what, folder)
        return params
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    build(staging)
    (staging / stamp.name).write_text(json.dumps(params))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return params


def class_table() -> pd.DataFrame:
    return pd.read_csv(REPO / CLASSES_FILE, dtype=str)


def _class_template(label: int, size: int, seed: int) -> np.ndarray:
    """A class's look: two colours blended by an oriented grating of class-specific frequency."""
    rng = np.random.default_rng([seed, label])
    colours = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(1.5, 6)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)))
    return colours[0] * (1 - wave[..., None]) + colours[1] * wave[..., None]


def _write_images(task: tuple) -> int:
    """One class and split: shifted, brightness-jittered, noisy copies of the class template."""
    from PIL import Image

    folder, names, label, split_index, size, seed = task
    template = _class_template(label, size, seed)
    for i, name in enumerate(names):
        rng = np.random.default_rng([seed, label, split_index, i])
        image = np.roll(template, tuple(rng.integers(0, size, 2)), axis=(0, 1)) * rng.uniform(0.8, 1.2)
        image += rng.normal(0, 20, image.shape).astype(np.float32)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(Path(folder) / name, quality=90)
    return len(names)


def build_dataset(root: Path, tiny: bool, seed: int = 0, workers: int | None = None) -> dict:
    """root/{train,val}/<wnid>/*.JPEG; skipped when `root` was built with the same parameters."""
    wnids = class_table().wnid.tolist()
    if tiny:
        wnids, counts, size = wnids[:TINY_CLASSES], [TINY_COUNTS] * TINY_CLASSES, TINY_SIZE
    else:
        counts, size = IMAGENETTE2_COUNTS, 256
    params = {"wnids": wnids, "counts": counts, "size": size, "seed": seed, "pixels": "class template + noise v1"}

    def build(staging: Path) -> None:
        tasks = []
        for label, (wnid, (n_train, n_val)) in enumerate(zip(wnids, counts)):
            # file names as in imagenette2: train/<wnid>/<wnid>_<n>.JPEG, val/<wnid>/ILSVRC2012_val_<n>.JPEG
            for split_index, (split, names) in enumerate([
                ("train", [f"{wnid}_{i}.JPEG" for i in range(n_train)]),
                ("val", [f"ILSVRC2012_val_{label * 10**5 + i:08d}.JPEG" for i in range(n_val)]),
            ]):
                folder = staging / split / wnid
                folder.mkdir(parents=True)
                # chunks of 100 images keep every worker busy to the end
                for start in range(0, len(names), 100):
                    tasks.append((str(folder), names[start : start + 100], label, split_index, size, seed))
        total = sum(a + b for a, b in counts)
        log.info("dataset: writing %d %d px JPEGs (%d classes) to %s", total, size, len(wnids), root)
        with concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count()) as pool:
            done = 0
            for n in pool.map(_write_images, tasks):
                done += n
                if done % 2000 < n:
                    log.info("dataset: %d / %d images", done, total)

    return cached_build(root, params, build, "dataset")


# --------------------------------------------------------------------------- 2. generator
def build_generator(folder: Path, tiny: bool) -> dict:
    """SD-v1.5-shaped random weights as a local diffusers folder (fp16, about 2.1 GB), or the tiny
    test model; skipped when `folder` holds the same build."""
    import diffusers
    import torch

    from sd_shapes import (
        TEXT_ENCODER_SD15,
        TEXT_ENCODER_TINY,
        UNET_SD15,
        UNET_TINY,
        VAE_SD15,
        VAE_TINY,
        save_sd_pipeline,
    )

    configs = (UNET_TINY, VAE_TINY, TEXT_ENCODER_TINY) if tiny else (UNET_SD15, VAE_SD15, TEXT_ENCODER_SD15)
    dtype = "float32" if tiny else "float16"
    params = {"unet": configs[0], "vae": configs[1], "text_encoder": configs[2], "dtype": dtype,
              "tokenizer": "character-level CLIP BPE vocabulary (bench/sd_shapes.py)", "weights": "random, seed 0"}

    def build(staging: Path) -> None:
        # random initialisation of 1.1 B parameters is much faster on the GPU
        device = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("generator: building %s random weights on %s into %s", "tiny" if tiny else "SD-v1.5-shaped", device, folder)
        # the cast's "modules that should be kept in float32: []" notice says nothing here
        diffusers.utils.logging.set_verbosity_error()
        save_sd_pipeline(staging, *configs, dtype=getattr(torch, dtype), device=device)
        if device == "cuda":  # hand the weights' memory back before the workflow's jobs start
            gc.collect()
            torch.cuda.empty_cache()

    return cached_build(folder, params, build, "generator")


# --------------------------------------------------------------------------- 3. config
def paper_settings() -> dict:
    """config/imagenette.yaml's dataset entry with its evaluation protocol's preset filled in (as
    the workflow fills it at start): the settings the rehearsal copies and projects to."""
    from detdistill import protocols

    config = {"datasets": {PAPER_DATASET: yaml.safe_load(PAPER_CONFIG.read_text())["datasets"][PAPER_DATASET]}}
    protocols.apply(config)
    return config["datasets"][PAPER_DATASET]


def ipc_epochs(evaluation: dict, ipc: int, model: str) -> int:
    """Epochs of an IPC-set evaluation, as its job computes them."""
    from detdistill.stages.evaluation import epochs_for

    return epochs_for(evaluation, ipc, model)


def full_epochs(evaluation: dict, model: str | None = None) -> int:
    """Epochs of the full-data evaluation, as its job computes them (model None: no per-model scale)."""
    from detdistill.stages.evaluation import epochs_for

    return epochs_for(evaluation, None, model)


def paper_epochs(paper: dict) -> dict:
    """Epochs per job kind, (rule, role or model) -> epochs, at the paper's settings."""
    out = {("train_classifier", role): paper[role]["train"]["epochs"] for role in ("detector", "judge")}
    for model in paper["evaluation"]["models"]:
        out[("evaluate", model)] = ipc_epochs(paper["evaluation"], IPC, model)
        out[("evaluate_full", model)] = full_epochs(paper["evaluation"], model)
    gradcam_model = gradcam_model_of(paper)
    out[("gradcam", gradcam_model)] = ipc_epochs(paper["evaluation"], IPC, gradcam_model)
    return out


def gradcam_model_of(entry: dict) -> str:
    """The model rule gradcam trains (one run per compared set, the evaluation's protocol)."""
    return entry.get("gradcam", {}).get("model", "convnet")


def rehearsal_settings(paper: dict, data_root: Path, weights: Path, epoch_scale: float, tiny: bool,
                       train_compile: bool | str | None = None) -> dict:
    """The paper's settings on the rehearsal's data and weights, every training's epochs x scale
    (at least MIN_EPOCHS, so the calibration's 1 epoch is a second, distinct point); with
    `train_compile`, every training's `train.compile` (detector, judge, evaluation) set to it."""
    cfg = copy.deepcopy(paper)
    cfg["source"].update(root=str(data_root), classes_file=CLASSES_FILE, download=False)
    cfg["generator"]["model"] = str(weights)
    for role in ("detector", "judge"):
        cfg[role]["train"]["epochs"] = max(MIN_EPOCHS, round(paper[role]["train"]["epochs"] * epoch_scale))
    evaluation = cfg["evaluation"]
    evaluation["epoch_scale"] = paper["evaluation"].get("epoch_scale", 1.0) * epoch_scale
    evaluation["full_epochs"] = max(MIN_EPOCHS, round(full_epochs(paper["evaluation"]) * epoch_scale))
    if evaluation.get("best_epoch_evaluations"):
        # the paper run measures the test accuracy N times (Minimax: every E // 100 epochs): the
        # rehearsal measures N x scale times, so its per-epoch cost projects to the paper's N passes
        evaluation["best_epoch_evaluations"] = max(1, round(paper["evaluation"]["best_epoch_evaluations"] * epoch_scale))
    # one full-data job per model, as the projection counts them (per_seed's merge job trains nothing)
    evaluation["full_data_jobs"] = "per_model"
    if train_compile is not None:
        for train in (cfg["detector"]["train"], cfg["judge"]["train"], evaluation.setdefault("train", {})):
            train["compile"] = train_compile
    if tiny:
        wnids = class_table().wnid.tolist()[:TINY_CLASSES]
        cfg["source"]["classes"] = wnids
        cfg["num_classes"] = len(wnids)
        cfg["image_size"] = TINY_SIZE
        cfg["synthesis"].update(steps=10, batch_size=20)
        cfg["refinement"]["n_candidates"] = 4
        cfg["judge"]["width"] = 8
        evaluation.update(models=TINY_MODELS, seeds=[0], image_size=16, load_size=20, width=8)
    short = {m: ipc_epochs(evaluation, IPC, m) for m in evaluation["models"] if ipc_epochs(evaluation, IPC, m) < MIN_EPOCHS}
    if short:
        raise SystemExit(f"--epoch-scale {epoch_scale} leaves IPC {IPC} evaluations {short} epochs: "
                         f"at least {MIN_EPOCHS} are needed to fit the fixed part; raise it")
    return cfg


def calibration_settings(rehearsal: dict) -> dict:
    """The rehearsal's settings with every training at 1 epoch."""
    cfg = copy.deepcopy(rehearsal)
    for role in ("detector", "judge"):
        cfg[role]["train"]["epochs"] = 1
    evaluation = cfg["evaluation"]
    evaluation.pop("model_epoch_scale", None)
    evaluation["epoch_scale"] = 1 / max(e for _, e in evaluation["epochs_by_ipc"])  # rounds to 1 epoch
    evaluation["full_epochs"] = 1
    return cfg


def calibration_targets(cfg: dict) -> list[str]:
    """The calibration's jobs: detector, judge, and per model one IPC-set and one full-data evaluation."""
    targets = [f"results/{CALIBRATION}/classifiers/{role}/metrics.json" for role in ("detector", "judge")]
    for model in cfg["evaluation"]["models"]:
        targets += [f"results/{CALIBRATION}/ipc{IPC}/eval/random/{model}.parquet", f"results/{CALIBRATION}/eval_full/{model}.parquet"]
    return targets


# --------------------------------------------------------------------------- 4. run
def copy_workflow(dest: Path) -> Path:
    """A fresh copy of the workflow, so the repository stays clean and every run starts empty."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest


def run_snakemake(workdir: Path, targets: list[str], args: argparse.Namespace, log_path: Path, timeout: float | None,
                  configfile: str = "rehearsal.yaml") -> dict:
    """Run the targets (first: --resources and --configfile take every following word), logging
    Snakemake's output to `log_path` and its progress lines here. Stopped after `timeout` seconds
    (SIGTERM, then SIGKILL to Snakemake and its jobs STOP_GRACE_S later: a job Snakemake waits
    for would otherwise run on, holding the log pipe open): what finished is still measured."""
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", str(args.cores), "--resources", f"gpu={args.gpus}",
           "--configfile", configfile]
    # the jobs import detdistill from this checkout, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    log.info("snakemake: %s (in %s)", shlex.join(cmd[2:]), workdir)
    start, started_at = time.perf_counter(), time.time()
    stopped = False
    with open(log_path, "w") as out:
        # its own process group: the deadline stops Snakemake and the jobs it started together
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

        def stop():
            nonlocal stopped
            stopped = True
            log.warning("snakemake: stopping after %.0f s (time budget)", time.perf_counter() - start)
            proc.send_signal(signal.SIGTERM)
            time.sleep(STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError):  # the group is gone
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, stop) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            for line in proc.stdout:
                out.write(line)
                if re.search(r"\d+ of \d+ steps|^Error|Exception", line):
                    log.info("snakemake: %s", line.strip())
            proc.wait()
        except BaseException:
            # Ctrl-C reaches only this process (Snakemake has its own session): stop it too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            raise
        if timer:
            timer.cancel()
    seconds = time.perf_counter() - start
    if proc.returncode and not stopped:
        log.error("snakemake failed (exit %d); the end of %s:\n%s", proc.returncode, log_path, "\n".join(Path(log_path).read_text().splitlines()[-60:]))
    return {"command": shlex.join(["snakemake", *cmd[3:]]), "seconds": seconds, "returncode": proc.returncode,
            "stopped_by_budget": stopped, "started_at": started_at, "log": str(log_path)}


#: a job's header in Snakemake's log: its start time, then `rule` or `localrule` and its name
_JOB_START = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\n(?:local)?rule (\w+):", re.M)


def unfinished_jobs(run: dict, bench_dir: Path) -> list[dict]:
    """Jobs of a stopped run that started but left no benchmark file (Snakemake writes it when a
    job ends): their rule, benchmark stem and seconds from their start (Snakemake's log, to the
    second) to the end of the run, so their time is not taken for Snakemake's own."""
    log_path = Path(run.get("log") or "")
    if not run.get("stopped_by_budget") or not log_path.is_file():
        return []
    text = log_path.read_text()
    starts = list(_JOB_START.finditer(text))
    run_end = run["started_at"] + run["seconds"]
    jobs = []
    for i, match in enumerate(starts):
        block = text[match.end(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        bench = re.search(r"^\s+benchmark: (\S+)", block, re.M)
        if not bench or (bench_dir.parent / bench.group(1)).is_file():
            continue
        started = datetime.datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        jobs.append({"rule": match.group(2), "job": Path(bench.group(1)).stem, "seconds": max(0.0, run_end - started)})
    return jobs


# --------------------------------------------------------------------------- 5. measure
def job_kind(rule: str, job: str, dataset: str, models: list[str], gradcam_model: str = "convnet") -> str | None:
    """The role or model a training job trains (from its benchmark file's stem), else None."""
    rest = job.removeprefix(f"{dataset}_")
    if rule == "train_classifier":
        return rest
    if rule == "gradcam":
        return gradcam_model
    if rule in ("evaluate", "evaluate_full"):
        return next((m for m in models if rest.endswith(f"_{m}") or rest == m), None)
    return None


def training_work(results: Path, rule: str, job: str, dataset: str, kind: str) -> tuple[int, int] | None:
    """(epochs, images trained on) of a finished training job, from its artifacts."""
    base = results / dataset
    if rule == "train_classifier":
        path = base / "classifiers" / kind / "metrics.json"
        if not path.is_file():
            return None
        metrics = json.loads(path.read_text())
        epochs = int(metrics["train_config"]["train"]["epochs"])
        return epochs, int(metrics["train_images"]) * epochs
    if rule == "gradcam":  # one run per compared set
        path = base / f"ipc{IPC}" / "figures" / "gradcam.parquet"
        if not path.is_file():
            return None
        runs = pd.read_parquet(path).drop_duplicates("method")
        return int(runs.epochs.max()), int((runs.train_images * runs.epochs).sum())
    if rule == "evaluate":
        method = job.removeprefix(f"{dataset}_ipc{IPC}_").removesuffix(f"_{kind}")
        path = base / f"ipc{IPC}" / "eval" / method / f"{kind}.parquet"
    else:
        path = base / "eval_full" / f"{kind}.parquet"
    if not path.is_file():
        return None
    table = pd.read_parquet(path)
    return int(table.epochs.max()), int((table.train_images * table.epochs).sum())


def _rows_in(paths) -> int | None:
    paths = list(paths)
    return sum(len(pd.read_parquet(p)) for p in paths) if paths else None


def generated_images(results: Path, rule: str) -> tuple[str, int | None] | None:
    """What a non-training stage processed, read from its artifacts (by the rule's name, so that
    per-part instead of per-class jobs are counted alike)."""
    base = results / DATASET
    if rule == "score_initial":
        return "images scored", _rows_in((base / f"ipc{IPC}" / "initial").glob("*/manifest.parquet"))
    if "encode" in rule:
        return "images encoded", _rows_in([base / "latents.parquet"] if (base / "latents.parquet").is_file() else [])
    if "prototype" in rule:
        return "latents clustered", _rows_in([base / "latents.parquet"] if (base / "latents.parquet").is_file() else [])
    if "initial" in rule:
        return "images generated", _rows_in((base / f"ipc{IPC}" / "initial").glob("*/manifest.parquet"))
    if "candidate" in rule:
        return "images generated", _rows_in((base / f"ipc{IPC}" / "candidates").glob("*/manifest.parquet"))
    return None


def fit_fixed(main: pd.DataFrame, calibration: pd.Series | None) -> dict:
    """Two points per job kind: the calibration job at 1 epoch (wall W1, E1 = 1) and the rehearsal's
    jobs (mean wall W, E epochs) give seconds per epoch c = (W - W1) / (E - E1) and a fixed part
    F = W1 - E1 c. If c <= 0 the training is too short to resolve against the jobs' noise: F = W1,
    which leaves next to nothing to scale. Without a calibration job F = 0: everything is scaled,
    an upper bound."""
    epochs, wall = int(main.epochs.iloc[0]), float(main.seconds.mean())
    if calibration is None:
        return {"fixed_s": 0.0, "method": "no calibration job: nothing subtracted (upper bound)"}
    w1, e1 = float(calibration.seconds), int(calibration.epochs)
    per_epoch = (wall - w1) / (epochs - e1) if epochs > e1 else 0.0
    note = "" if per_epoch > 0 else "; training not resolved (not slower than the calibration): not scaled"
    fixed = max(w1 - e1 * max(per_epoch, 0.0), 0.0)
    return {"fixed_s": fixed, "method": f"fit: {e1} epoch {w1:.1f} s, {epochs} epochs {wall:.1f} s (mean of {len(main)}){note}"}


#: a training's progress line in a job log (detdistill.train): time, the run's label, epoch i of n
# (not anchored: tqdm's bar, ended by a carriage return only, shares the line)
_EPOCH_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ detdistill: (.+?) epoch (\d+)/(\d+) loss")


def epoch_seconds(log_path: Path) -> float | None:
    """Seconds per epoch of a training job after each run's first epoch, summed over its runs,
    from the timestamps of its epoch lines: the steady rate, without start-up, image loading and
    the first epoch's warm-up (cuDNN autotuning, first kernels). None when a run logged fewer than
    two epochs (nothing to time) or the log is missing."""
    if not log_path.is_file():
        return None
    runs: dict[str, list[tuple[int, float]]] = {}
    for stamp, label, epoch, _ in _EPOCH_LINE.findall(log_path.read_text()):
        when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        runs.setdefault(label, []).append((int(epoch), when))
    rates = []
    for points in runs.values():
        (first_epoch, first), (last_epoch, last) = min(points), max(points)
        if last_epoch <= first_epoch:
            return None
        rates.append((last - first) / (last_epoch - first_epoch))
    return sum(rates) if rates else None


def peak_gpu_memory(logs: Path) -> list[dict]:
    """Per rule, the largest peak of CUDA memory its jobs' logs report (torch's allocator; jobs
    that never used CUDA log none), largest first: how many jobs fit on one card at once."""
    peaks: dict[str, dict] = {}
    for log_path in sorted(logs.glob("*/*.log")):
        found = PEAK_GPU_PATTERN.findall(log_path.read_text(errors="replace"))
        if not found:
            continue
        allocated, reserved = (float(v) for v in found[-1])
        rule = log_path.parent.name
        if rule not in peaks or reserved > peaks[rule]["reserved_mib"]:
            peaks[rule] = {"rule": rule, "job": log_path.stem, "allocated_mib": allocated, "reserved_mib": reserved}
    return sorted(peaks.values(), key=lambda p: -p["reserved_mib"])


#: the fields of a stage row, in the JSON's order
STAGE_FIELDS = ["stage", "rule", "kind", "jobs", "wall_s", "images", "what", "images_per_s", "epochs", "paper_epochs",
                "fixed_s_per_job", "fixed_method", "train_s", "train_images_per_s", "projected_s", "projection"]


def stage_row(**fields) -> dict:
    return {**dict.fromkeys(STAGE_FIELDS), **fields}


def training_stages(rule: str, group: pd.DataFrame, calib: pd.DataFrame, results: Path, models: list[str], paper: dict,
                    gradcam_model: str = "convnet") -> list[dict]:
    """One row per role or model of a training rule: measured, and projected to the paper's epochs
    as fixed part + (wall - fixed part) x paper epochs / rehearsal epochs, per job. The training part
    is the rehearsal's epochs at the steady rate of the job's epoch lines (`epoch_seconds`), or, for
    jobs without them, what the calibration fit leaves (`fit_fixed`)."""
    rows = []
    kinds = [job_kind(rule, j, DATASET, models, gradcam_model) for j in group.job]
    for kind, sub in group.assign(kind=kinds).groupby("kind", sort=True):
        work = [training_work(results, rule, j, DATASET, kind) for j in sub.job]
        sub = sub.assign(epochs=[w[0] if w else np.nan for w in work], images=[w[1] if w else np.nan for w in work])
        sub = sub.dropna(subset=["epochs"])  # jobs stopped by the deadline left no artifact
        if sub.empty:
            continue
        epochs, paper_epochs_ = int(sub.epochs.iloc[0]), paper[(rule, kind)]
        # the steady per-epoch time from the jobs' own epoch lines where every job has them (the
        # fixed part is then the rest of each job's wall); else the calibration fit
        rates = [epoch_seconds(results.parent / "logs" / rule / f"{job}.log") for job in sub.job]
        if all(rate is not None for rate in rates):
            fixed = np.maximum(sub.seconds.to_numpy() - epochs * np.array(rates), 0.0)
            method = f"epoch timestamps: {np.mean(rates):.3f} s per epoch after the first (mean of {len(rates)} jobs)"
        else:
            cal = calib[(calib.rule == rule) & np.array([job_kind(rule, j, CALIBRATION, models, gradcam_model) == kind
                                                         for j in calib.job], dtype=bool)]
            cal_work = training_work(results, rule, cal.job.iloc[0], CALIBRATION, kind) if len(cal) else None
            fit = fit_fixed(sub, pd.Series({"seconds": cal.seconds.iloc[0], "epochs": cal_work[0]}) if cal_work else None)
            fixed, method = np.full(len(sub), fit["fixed_s"]), fit["method"]
        # no job's fixed part exceeds its wall time
        fixed = np.minimum(fixed, sub.seconds.to_numpy())
        wall, n, images = float(sub.seconds.sum()), len(sub), int(sub.images.sum())
        train_s = wall - float(fixed.sum())
        rows.append(stage_row(
            stage=f"{rule} ({kind})", rule=rule, kind=kind, jobs=n, wall_s=wall, images=images,
            what="images trained on (train images x epochs x seeds)", images_per_s=images / wall,
            epochs=epochs, paper_epochs=paper_epochs_, fixed_s_per_job=float(fixed.mean()), fixed_method=method,
            train_s=train_s, train_images_per_s=images / train_s if train_s > 0 else None,
            projected_s=float(fixed.sum()) + train_s * paper_epochs_ / epochs, projection="projected",
        ))
    return rows


def measure(workdir: Path, paper: dict, models: list[str], main_run: dict, serial: bool) -> dict:
    """Per stage: jobs, wall seconds, images and images/s; training stages projected to the
    paper's epochs with the fitted fixed part; totals against the issue's targets."""
    results = workdir / "results"
    jobs = job_table(workdir / "benchmarks", DATASET)
    calib = job_table(workdir / "benchmarks", CALIBRATION)
    stages = []
    order = {rule: i for i, rule in enumerate(RULE_ORDER)}
    for rule in sorted(jobs.rule.unique(), key=lambda r: (order.get(r, len(order)), r)):
        group = jobs[jobs.rule == rule]
        if rule in TRAINING_RULES:
            stages += training_stages(rule, group, calib, results, models, paper_epochs(paper), gradcam_model_of(paper))
            continue
        what, images = generated_images(results, rule) or (None, None)
        wall = float(group.seconds.sum())
        stages.append(stage_row(
            stage=rule, rule=rule, jobs=len(group), wall_s=wall, images=images, what=what,
            images_per_s=images / wall if images else None, projected_s=wall, projection="as measured (the paper's work already)",
        ))
    # jobs the deadline stopped: measured up to the stop, not projected (their work is unknown)
    unfinished = unfinished_jobs(main_run, workdir / "benchmarks")
    for job in unfinished:
        stages.append(stage_row(stage=f"{job['rule']} (unfinished: stopped by the time budget)", rule=job["rule"], jobs=1,
                                wall_s=job["seconds"], projected_s=job["seconds"], projection="as far as it ran (a lower bound)"))
    # Snakemake itself (every rule has a benchmark file): the run's wall time minus
    # its jobs', when jobs ran one at a time; with parallel jobs it cannot be told apart
    run_seconds = main_run["seconds"]
    jobs_seconds = float(jobs.seconds.sum()) + sum(job["seconds"] for job in unfinished)
    other = max(0.0, run_seconds - jobs_seconds) if serial and len(jobs) else 0.0
    stages.append(stage_row(
        stage="other (Snakemake itself)" if serial else "other (not measurable: jobs ran in parallel)",
        wall_s=other, projected_s=other, projection="as measured",
    ))
    full = sum(s["projected_s"] for s in stages if s["rule"] == "evaluate_full")
    rest = sum(s["projected_s"] for s in stages if s["rule"] != "evaluate_full")
    # a stopped or failed run lacks stages: its totals are no verdict; nor are the sums of a run
    # whose jobs overlapped (each job's wall was measured while others shared the device)
    complete = main_run["returncode"] == 0
    judged = complete and serial
    totals = {
        "complete": complete,
        "serial": serial,
        "rehearsal_run_s": run_seconds,
        "projected_without_full_data_s": rest,
        "projected_full_data_s": full,
        "target_without_full_data_s": TARGETS_S["without_full_data"],
        "target_full_data_s": TARGETS_S["full_data"],
        "meets_without_full_data": rest <= TARGETS_S["without_full_data"] if judged else None,
        "meets_full_data": full <= TARGETS_S["full_data"] if judged else None,
    }
    anomalies = results / DATASET / f"ipc{IPC}" / "anomalies.parquet"
    flagged = None
    if anomalies.is_file():
        table = pd.read_parquet(anomalies)
        flagged = {"flagged": int(table.defective.sum()), "initial_images": len(table)}
    return {"stages": stages, "totals": totals, "flagged": flagged, "gpu_memory": peak_gpu_memory(workdir / "logs")}


# --------------------------------------------------------------------------- 6. report
def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "kornia", "kornia_rs", "snakemake"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> tuple[str, str]:
    """(description, file-name slug): the GPU's name, else the CPU's."""
    import torch

    cpu = cpu_description()
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        return f"{gpu} (CUDA {torch.version.cuda}); {cpu}", re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return f"CPU only: {cpu}", "cpu"


def _plain(value):
    """JSON for numpy scalars (as numbers) and paths."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _fmt(value, digits=0) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def markdown(report: dict) -> str:
    t, runs = report["totals"], report["runs"]
    calibration = f"`{runs['calibration']['command']}`" if runs.get("calibration") else "skipped"
    head = [
        f"# Rehearsal of `results/imagenette_ipc10.csv`{' (tiny smoke test, not a benchmark)' if report['tiny'] else ''}",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}",
        f"- command: `{report['command']}`",
        f"- snakemake: `{runs['main']['command']}` (calibration: {calibration})",
        f"- data: ImageNette-shaped, {report['dataset']['train_images']:,} train / {report['dataset']['val_images']:,} val images, "
        f"{report['dataset']['size']} px, {len(report['dataset']['wnids'])} classes (synthetic class-dependent pixels)",
        f"- generator: {'tiny SD-shaped' if report['tiny'] else 'SD-v1.5-shaped (UNet, VAE, CLIP text encoder)'} random weights "
        f"({report['generator']['dtype']}), character-level tokenizer",
        f"- epoch scale: {report['epoch_scale']} of config/imagenette.yaml's epochs (at least {MIN_EPOCHS}); "
        f"evaluation train.compile: {report['config'][DATASET]['evaluation'].get('train', {}).get('compile', False)}",
        f"- preparation (dataset and weights, cached when built before): {report['prepare_s']:.0f} s; calibration run: "
        + (f"{runs['calibration']['seconds']:.0f} s" if runs.get("calibration") else "skipped"),
        f"- rehearsal run (`{TARGET}`): **{t['rehearsal_run_s']:.0f} s ({t['rehearsal_run_s'] / 60:.1f} min)**"
        + (" (stopped by the time budget: incomplete)" if runs["main"]["stopped_by_budget"] else "")
        + (f" (snakemake exit {runs['main']['returncode']})" if runs["main"]["returncode"] else ""),
    ]
    if report["flagged"]:
        head.append(f"- anomalies: {report['flagged']['flagged']} of {report['flagged']['initial_images']} initial images flagged "
                    f"(x {report['config'][DATASET]['refinement']['n_candidates']} candidates each; random weights make noise images, "
                    "so the share differs from the real model's)")
    rows = ["| stage | jobs | wall s | images | img/s | epochs: rehearsal -> paper | fixed s/job | training img/s | **projected s** |",
            "|---|---|---|---|---|---|---|---|---|"]
    for s in report["stages"]:
        epochs = f"{s['epochs']} -> {s['paper_epochs']}" if s["epochs"] is not None else ""
        rows.append(f"| {s['stage']} | {_fmt(s['jobs'])} | {_fmt(s['wall_s'], 1)} | {_fmt(s['images'])} | {_fmt(s['images_per_s'], 1)} "
                    f"| {epochs} | {_fmt(s['fixed_s_per_job'], 1)} | {_fmt(s['train_images_per_s'], 0)} | {_fmt(s['projected_s'], 0)} |")
    verdict = {True: "meets", False: "misses",
               None: "no verdict: the run is incomplete" if not t["complete"] else
               "no verdict: jobs overlapped, so these sums are not a run time (run with --cores 1 for one)"}
    totals = [
        "## Projected at the paper's epochs" + (" (jobs one at a time, as in this run)" if report["serial"] else ""),
        "",
        "| part of `results/imagenette_ipc10.csv` | projected | target (one H100) | |",
        "|---|---|---|---|",
        f"| everything but the full-data rows | {t['projected_without_full_data_s']:.0f} s ({t['projected_without_full_data_s'] / 60:.1f} min) "
        f"| {t['target_without_full_data_s'] / 60:.0f} min | {verdict[t['meets_without_full_data']]} |",
        f"| full-data rows (`evaluate_full`) | {t['projected_full_data_s']:.0f} s ({t['projected_full_data_s'] / 60:.1f} min) "
        f"| {t['target_full_data_s'] / 60:.0f} min | {verdict[t['meets_full_data']]} |",
    ]
    method = [
        "How projected: per job, wall = fixed part + epochs x seconds per epoch. The seconds per epoch are the steady",
        "rate from the timestamps of the job's epoch lines (after each run's first epoch); the fixed part (start-up,",
        "imports, CUDA, reading images, the first epoch's warm-up, test passes) is the rest of the job's wall. Jobs",
        f"without two epoch lines fall back to a fit against a calibration run of the same job at 1 epoch (`{CALIBRATION}`).",
        "Projected = fixed + (wall - fixed) x paper epochs / rehearsal epochs. Generation, encoding and the other",
        "stages already do the paper's work and are projected as",
        "measured. Images/s is images over the stage's wall time; training img/s is over its training part only.",
        "Jobs ran one at a time, so the sums are serial times; jobs run concurrently would shorten them." if report["serial"] else
        "Jobs ran in parallel here, so the sums exceed the run's wall time and the projection is not a run time.",
        "",
        "Per job kind, where its seconds per epoch come from:",
        "",
    ]
    fits = [f"- {s['stage']}: {s['fixed_method']}" for s in report["stages"] if s["fixed_method"]]
    memory = []
    if report.get("gpu_memory"):
        memory = ["", "## Peak GPU memory per rule (its largest job; torch's caching allocator, MiB)", "",
                  "| rule | job | allocated | reserved |", "|---|---|---|---|"]
        memory += [f"| {m['rule']} | {m['job']} | {m['allocated_mib']:,.0f} | {m['reserved_mib']:,.0f} |" for m in report["gpu_memory"]]
    return "\n".join([*head, "", *rows, "", *totals, "", *method, *fits, *memory, ""])


def write_logs_archive(path: Path, workdir: Path) -> None:
    """Logs, benchmark files and the overlay of the run, for reading a GPU run's failures here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in ("logs", "benchmarks", "rehearsal.yaml", "snakemake_main.log", "snakemake_calibration.log"):
            if (workdir / name).exists():
                tar.add(workdir / name, arcname=name)


# --------------------------------------------------------------------------- main
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

    dataset = build_dataset(workdir / f"imagenette2{suffix}", args.tiny, workers=args.workers)
    generator = build_generator(workdir / f"sd15-shaped{suffix}", args.tiny)
    paper = paper_settings()
    settings = rehearsal_settings(paper, workdir / f"imagenette2{suffix}", workdir / f"sd15-shaped{suffix}", scale, args.tiny,
                                  None if args.train_compile is None else COMPILE_WORDS[args.train_compile])
    calibration = calibration_settings(settings)
    run_dir = copy_workflow(workdir / "run")
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
    runs = {"main": run_snakemake(run_dir, [TARGET], args, run_dir / "snakemake_main.log", budget(reserve)),
            "calibration": None}
    if not args.skip_calibration:
        runs["calibration"] = run_snakemake(run_dir, calibration_targets(settings), args, run_dir / "snakemake_calibration.log", budget())

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
    (args.out_dir / f"{name}.json").write_text(json.dumps(report, indent=2, default=_plain) + "\n")
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
