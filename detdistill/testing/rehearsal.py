"""The rehearsal of the paper's ImageNette target (bench/rehearsal.py): its config at a fraction of
the paper's epochs, and the measurement and projection of its stage times.

A training job's time is a fixed part (process start, imports, CUDA, reading the images, test
passes) plus a part proportional to its epochs: per job, the steady seconds per epoch come from the
timestamps of its epoch lines, else from a calibration run of the same job at 1 epoch (two points,
`fit_fixed`). Projected = fixed + (wall - fixed) x paper epochs / rehearsal epochs. Generation,
encoding and the other stages already do the paper's work: projected as measured.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from detdistill.stages.evaluation import epochs_for
from detdistill.workflow import PEAK_GPU_PATTERN

from .workflow_run import RULE_ORDER, job_table, unfinished_jobs

DATASET = "rehearsal"
#: the same training jobs at 1 epoch: measures each job's fixed part
CALIBRATION = "rehearsal1ep"
IPC = 10
TARGET = f"results/{DATASET}_ipc{IPC}.csv"
#: the paper's dataset entry (config/<PAPER_DATASET>.yaml) the rehearsal copies
PAPER_DATASET = "imagenette"
#: the class table of the rehearsal's data, relative to the workflow's folder
CLASSES_FILE = "resources/classes/imagenette.csv"
#: the smoke test's size: 2 classes with enough train images for IPC 10, one evaluation model
#: (the detector and judge still train the other two architectures)
TINY_CLASSES, TINY_COUNTS, TINY_SIZE, TINY_MODELS = 2, (12, 4), 32, ["convnet"]
#: the rules that train classifiers: projected to the paper's epochs (the others are measured as they are)
TRAINING_RULES = ("train_classifier", "evaluate", "evaluate_full", "gradcam")
#: the paper-scale speed targets: `results/imagenette_ipc10.csv` on one H100
TARGETS_S = {"without_full_data": 30 * 60, "full_data": 45 * 60}
#: the fewest rehearsal epochs of a training: the fixed part is fitted from 1 and this many
MIN_EPOCHS = 2


# --------------------------------------------------------------------------- config
def paper_settings(config_path: Path) -> dict:
    """The PAPER_DATASET entry of `config_path` (config/imagenette.yaml) with its evaluation protocol's
    preset filled in (as the workflow fills it at start): the settings the rehearsal copies and projects to."""
    from detdistill import protocols

    config = {"datasets": {PAPER_DATASET: yaml.safe_load(Path(config_path).read_text())["datasets"][PAPER_DATASET]}}
    protocols.apply(config)
    return config["datasets"][PAPER_DATASET]


def paper_epochs(paper: dict) -> dict:
    """Epochs per job kind, (rule, role or model) -> epochs, at the paper's settings."""
    out = {("train_classifier", role): paper[role]["train"]["epochs"] for role in ("detector", "judge")}
    for model in paper["evaluation"]["models"]:
        out[("evaluate", model)] = epochs_for(paper["evaluation"], IPC, model)
        out[("evaluate_full", model)] = epochs_for(paper["evaluation"], None, model)
    gradcam_model = gradcam_model_of(paper)
    out[("gradcam", gradcam_model)] = epochs_for(paper["evaluation"], IPC, gradcam_model)
    return out


def gradcam_model_of(entry: dict) -> str:
    """The model rule gradcam trains (one run per compared set, the evaluation's protocol)."""
    return entry.get("gradcam", {}).get("model", "convnet")


def rehearsal_settings(paper: dict, data_root: Path, weights: Path, epoch_scale: float, tiny_classes: list[str] | None = None,
                       train_compile: bool | str | None = None) -> dict:
    """The paper's settings on the rehearsal's data and weights, every training's epochs x scale
    (at least MIN_EPOCHS, so the calibration's 1 epoch is a second, distinct point); with
    `tiny_classes` (their wnids), the smoke test's sizes; with `train_compile`, every training's
    `train.compile` (detector, judge, evaluation) set to it."""
    cfg = copy.deepcopy(paper)
    cfg["source"].update(root=str(data_root), classes_file=CLASSES_FILE, download=False)
    cfg["generator"]["model"] = str(weights)
    for role in ("detector", "judge"):
        cfg[role]["train"]["epochs"] = max(MIN_EPOCHS, round(paper[role]["train"]["epochs"] * epoch_scale))
    evaluation = cfg["evaluation"]
    evaluation["epoch_scale"] = paper["evaluation"].get("epoch_scale", 1.0) * epoch_scale
    evaluation["full_epochs"] = max(MIN_EPOCHS, round(epochs_for(paper["evaluation"], None, None) * epoch_scale))
    if evaluation.get("best_epoch_evaluations"):
        # the paper run measures the test accuracy N times (Minimax: every E // 100 epochs): the
        # rehearsal measures N x scale times, so its per-epoch cost projects to the paper's N passes
        evaluation["best_epoch_evaluations"] = max(1, round(paper["evaluation"]["best_epoch_evaluations"] * epoch_scale))
    # one full-data job per model, as the projection counts them (per_seed's merge job trains nothing)
    evaluation["full_data_jobs"] = "per_model"
    if train_compile is not None:
        for train in (cfg["detector"]["train"], cfg["judge"]["train"], evaluation.setdefault("train", {})):
            train["compile"] = train_compile
    if tiny_classes:
        cfg["source"]["classes"] = list(tiny_classes)
        cfg["num_classes"] = len(tiny_classes)
        cfg["image_size"] = TINY_SIZE
        cfg["synthesis"].update(steps=10, batch_size=20)
        cfg["refinement"]["n_candidates"] = 4
        cfg["judge"]["width"] = 8
        evaluation.update(models=TINY_MODELS, seeds=[0], image_size=16, load_size=20, width=8)
    short = {m: epochs_for(evaluation, IPC, m) for m in evaluation["models"] if epochs_for(evaluation, IPC, m) < MIN_EPOCHS}
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


# --------------------------------------------------------------------------- measure
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
    paper's epochs with the fitted fixed part; totals against the targets."""
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
# --------------------------------------------------------------------------- report
def plain(value):
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


