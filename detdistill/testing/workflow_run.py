"""Run the workflow from a fresh copy and read back its jobs: the copy, the Snakemake process (with a
time budget that stops it and its jobs), and the per-job table of its `benchmark:` files."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

import detdistill

log = logging.getLogger(__name__)

#: what a copy of the workflow holds (the checkout's files a run reads; the package is imported)
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "resources"]
#: the workflow's stages in pipeline order, for the tables (rules not listed follow, by name)
RULE_ORDER = ["prepare_data", "prepare_generator", "encode_latents", "compute_prototypes", "synthesize_initial",
              "train_classifier", "score_initial", "detect_anomalies", "generate_candidates", "build_refined_set",
              "select_random_subset", "evaluate", "evaluate_full", "label_consistency", "set_quality", "refinement_figures",
              "gradcam", "learning_curves", "aggregate_results"]
#: seconds between asking Snakemake to stop (it cancels its jobs) and killing it
STOP_GRACE_S = 20


def copy_workflow(source: Path, dest: Path) -> Path:
    """A fresh copy of the workflow in `source` (a checkout) at `dest`, so the checkout stays clean and
    every run starts empty."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = Path(source) / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest


def package_search_path() -> dict[str, str]:
    """The environment with the folder holding this detdistill first on PYTHONPATH: Snakemake and its
    jobs import the package the caller imported, whatever else is installed."""
    here = str(Path(detdistill.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}


def run_snakemake(workdir: Path, targets: list[str], cores: int, gpus: int, log_path: Path, timeout: float | None,
                  configfile: str) -> dict:
    """Run the targets (first: --resources and --configfile take every following word), logging
    Snakemake's output to `log_path` and its progress lines here. Stopped after `timeout` seconds
    (SIGTERM, then SIGKILL to Snakemake and its jobs STOP_GRACE_S later: a job Snakemake waits
    for would otherwise run on, holding the log pipe open): what finished is still measured."""
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", str(cores), "--resources", f"gpu={gpus}",
           "--configfile", configfile]
    log.info("snakemake: %s (in %s)", shlex.join(cmd[2:]), workdir)
    start, started_at = time.perf_counter(), time.time()
    stopped = False
    with open(log_path, "w") as out:
        # its own process group: the deadline stops Snakemake and the jobs it started together
        proc = subprocess.Popen(cmd, cwd=workdir, env=package_search_path(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

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
        log.error("snakemake failed (exit %d); the end of %s:\n%s", proc.returncode, log_path,
                  "\n".join(Path(log_path).read_text().splitlines()[-60:]))
    return {"command": shlex.join(["snakemake", *cmd[3:]]), "seconds": seconds, "returncode": proc.returncode,
            "stopped_by_budget": stopped, "started_at": started_at, "log": str(log_path)}


#: a job's header in Snakemake's log: its start time, then `rule` or `localrule` and its name
_JOB_START = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\n(?:local)?rule (\w+):", re.M)


def unfinished_jobs(run: dict, bench_dir: Path) -> list[dict]:
    """Jobs of a stopped run (`run_snakemake`'s record) that started but left no benchmark file
    (Snakemake writes it when a job ends): their rule, benchmark stem and seconds from their start
    (Snakemake's log, to the second) to the end of the run, so their time is not taken for
    Snakemake's own."""
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


def job_table(bench_dir: Path, dataset: str | None = None) -> pd.DataFrame:
    """One row per job: rule, job (the benchmark file's stem), wall and CPU seconds, max RSS."""
    rows = []
    for tsv in sorted(Path(bench_dir).glob("*/*.tsv")):
        # benchmark files are named <dataset>[_...].tsv: keep one dataset's jobs out of another's table
        if dataset and tsv.stem != dataset and not tsv.stem.startswith(f"{dataset}_"):
            continue
        row = pd.read_csv(tsv, sep="\t").iloc[0]
        rows.append({"rule": tsv.parent.name, "job": tsv.stem, "seconds": row["s"], "max_rss_mb": row["max_rss"],
                     "cpu_seconds": row["cpu_time"]})
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb", "cpu_seconds"])


def stage_table(bench_dir: Path, dataset: str | None = None) -> pd.DataFrame:
    """Per rule: its jobs, their summed wall and CPU seconds and the largest max RSS, slowest first."""
    jobs = job_table(bench_dir, dataset)
    return (
        jobs.groupby("rule")
        .agg(jobs=("job", "count"), wall_seconds=("seconds", "sum"), cpu_seconds=("cpu_seconds", "sum"),
             max_rss_mb=("max_rss_mb", "max"))
        .sort_values("wall_seconds", ascending=False)
        .round(1)
        .reset_index()
    )
