"""Kill a run at a point of one of its long stages, resume it as the README says, and compare it with
the uninterrupted run (bench/kill_resume.py runs the trials; tests/test_resume.py one of them)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

STAGES = {  # stage -> (rule, its job's log under logs/, a part of its output's path); cheapest first
    "evaluation": ("evaluate", "evaluate/{ds}_ipc{ipc}_conf_sim_convnet.log", "/eval/conf_sim/convnet"),
    "candidates": ("generate_candidates", "generate_candidates/{ds}_ipc{ipc}_part0.log", "/candidates/part0"),
    "detector": ("train_classifier", "train_classifier/{ds}_detector.log", "/classifiers/detector/"),
    "synthesis": ("synthesize_initial", "synthesize_initial/{ds}_ipc{ipc}_part0.log", "/initial/part0"),
    "generator training": ("prepare_generator", "prepare_generator/{ds}.log", "/generator"),
}
SIGNALS = [signal.SIGKILL, signal.SIGINT]
CACHE_PART = "cache"


def snakemake_cmd(target: str, *extra: str, configfile: str = "run.yaml") -> list[str]:
    # the target first: --configfile takes every following word
    return [sys.executable, "-m", "snakemake", target, "--cores", "2", *extra, "--configfile", configfile]


def run(workdir: Path, cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)


def file_records(results: Path) -> dict[str, dict]:
    """path (relative to the workdir) -> sha256, inode, mtime_ns of every file under results/.
    Also taken of a running workflow's tree (the state at the kill): a temporary file renamed into
    place between the listing and its reading is left out (its final name is listed if it was
    there already, else it was not finished at the snapshot)."""
    out = {}
    # os.walk skips a folder that vanishes under it (a staging folder renamed into place); rglob raises
    listed = (Path(root) / name for root, _, names in os.walk(results) for name in names)
    for path in sorted(listed):
        try:
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except (FileNotFoundError, IsADirectoryError):
            continue
        out[str(path.relative_to(results.parent))] = {"sha256": digest, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns}
    return out


def is_leftover(rel: str) -> bool:
    """Inside a temporary file or staging folder (`.<name>.tmp-*`, `.<name>.staging-*`, `.<name>.old-*`)."""
    return any(part.startswith(".") and any(m in part for m in (".tmp-", ".staging-", ".old-")) for part in Path(rel).parts)


def in_cache(rel: str) -> bool:
    return Path(rel).parts[2:3] == (CACHE_PART,)


def incomplete_outputs(workdir: Path) -> list[str]:
    """The outputs Snakemake marked incomplete (the jobs running at the kill): marker files named by
    the urlsafe base64 of the output path."""
    folder = workdir / ".snakemake" / "incomplete"
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return sorted(base64.urlsafe_b64decode(n).decode() for n in names if n != "migration_underway")


def job_span_seconds(workdir: Path, log_rel: str) -> float:
    """How long the reference run's job worked after setting up its log: from the log's first
    timestamp (`logging`'s asctime) to the log's last write."""
    log = workdir / "logs" / log_rel
    first = log.read_text().splitlines()[0][:23]  # "2026-11-23 12:30:25,123"
    start = dt.datetime.strptime(first, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return max(0.5, log.stat().st_mtime - start)


def leftovers(results: Path) -> list[str]:
    """Hidden temporary files and staging folders (`.<name>.tmp-*`, `.staging-*`, `.old-*`) under results/,
    empty folders included."""
    return sorted(str(p.relative_to(results.parent)) for p in results.rglob(".*")
                  if any(m in p.name for m in (".tmp-", ".staging-", ".old-")))


def cache_counts(workdir: Path) -> dict[str, dict[str, int]]:
    """The resumed generating jobs' `reused`/`generated` counts, from their logs."""
    out = {}
    for rule in ("synthesize_initial", "generate_candidates"):
        for log in sorted((workdir / "logs" / rule).glob("*.log")):
            for line in log.read_text().splitlines():
                if "reused from the image cache" in line:
                    words = line.split(": ")[-1].split()  # "N images, R reused from the image cache C, G generated"
                    out[f"{rule}/{log.stem}"] = {"images": int(words[0]), "reused": int(words[2]), "generated": int(words[-2])}
    return out


def under(path: str, outputs) -> bool:
    return any(path == o or path.startswith(o.rstrip("/") + "/") for o in outputs)


def planned_outputs(workdir: Path, target: str, rule: str, configfile: str) -> list[str]:
    """The outputs of the jobs that `--forcerun rule` will run (Snakemake's dry run)."""
    proc = run(workdir, snakemake_cmd(target, "--forcerun", rule, "-n", configfile=configfile))
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return [o for m in re.finditer(r"^\s+output: (.+)$", proc.stdout, re.MULTILINE) for o in m.group(1).split(", ")]


def forced_copy(ref_dir: Path, dest: Path, rule: str, target: str, configfile: str = "run.yaml") -> tuple[Path, list[str]]:
    """A copy of the finished reference run (Snakemake's metadata and mtimes kept) without the
    outputs of `rule`'s jobs and of everything that depends on them (what `--forcerun rule` would
    redo), and without the cached images those jobs make: the state of a run in which the stage
    is next. Returns the copy and the removed outputs. (Forcing the rule instead would leave stale
    downstream outputs, which a resumed run without --forcerun rightly keeps.)"""
    shutil.copytree(ref_dir, dest, symlinks=True, ignore=shutil.ignore_patterns("logs", "benchmarks"))
    planned = planned_outputs(dest, target, rule, configfile)
    for out in planned:
        path = dest / out
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    cache = next((dest / "results").glob(f"*/{CACHE_PART}"), None)
    if cache is not None and rule in ("prepare_generator", "synthesize_initial"):
        shutil.rmtree(cache)
    elif cache is not None and rule == "generate_candidates":
        made = {hashlib.sha256(p.read_bytes()).digest() for p in (ref_dir / "results").glob("*/ipc*/candidates/part*/*.png")}
        for png in cache.rglob("*.png"):
            if hashlib.sha256(png.read_bytes()).digest() in made:
                png.unlink()
    return dest, planned


def trial(index: int, stage: str, sig: signal.Signals, fraction: float, target: str, ref_dir: Path, workdir: Path, log_rel: str,
          keep: bool = False, configfile: str = "run.yaml") -> dict:
    """One kill-and-resume trial in `workdir`, started from a copy of the finished reference run
    `ref_dir` with the stage's rule forced: SIGKILL or SIGINT `fraction` of the way through the
    stage's job (by the reference job's duration)."""
    rule = STAGES[stage][0]
    delay = fraction * job_span_seconds(ref_dir, log_rel)
    reference = file_records(ref_dir / "results")
    forced_copy(ref_dir, workdir, rule, target, configfile)
    record = {"trial": index, "stage": stage, "rule": rule, "signal": sig.name, "delay_s": round(delay, 2),
              "delay_fraction_of_job": round(fraction, 3)}
    started = time.monotonic()
    proc = subprocess.Popen(snakemake_cmd(target, configfile=configfile), cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    log_path = workdir / "logs" / log_rel
    while not log_path.exists() and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        raise RuntimeError(f"trial {index}: the run ended (rc {proc.returncode}) before {log_rel} appeared")
    time.sleep(delay)
    if proc.poll() is not None:  # a faster machine than the reference's: nothing left to kill
        record.update(completed=proc.returncode == 0, passed=None, note="the run ended before the kill point")
        return record
    at_kill = file_records(workdir / "results")
    incomplete = incomplete_outputs(workdir)  # the jobs running now (SIGINT makes Snakemake clean them up)
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    record["killed_after_s"] = round(time.monotonic() - started, 1)
    record["jobs_running_at_kill"] = incomplete
    record["stage_job_running_at_kill"] = any(STAGES[stage][2] in out for out in incomplete)
    record["leftovers_after_kill"] = leftovers(workdir / "results")

    unlock = run(workdir, snakemake_cmd(target, "--unlock", configfile=configfile))
    t0 = time.monotonic()
    resumed = run(workdir, snakemake_cmd(target, "--rerun-incomplete", configfile=configfile))
    record["resume_s"] = round(time.monotonic() - t0, 1)
    record["completed"] = unlock.returncode == 0 and resumed.returncode == 0
    if not record["completed"]:
        record["error"] = (unlock.stderr + resumed.stderr)[-3000:]
        return record
    final = file_records(workdir / "results")
    left = leftovers(workdir / "results")
    record["cache_leftovers"] = sum(in_cache(p) for p in left)
    record["results_leftovers"] = [p for p in left if not in_cache(p)]
    artifacts = {p: r["sha256"] for p, r in final.items() if not is_leftover(p)}
    expected = {p: r["sha256"] for p, r in reference.items()}
    record["artifacts"] = len(artifacts)
    record["missing_or_extra"] = sorted(set(artifacts) ^ set(expected))
    record["differing"] = sorted(p for p in set(artifacts) & set(expected) if artifacts[p] != expected[p])
    # finished before the kill: on disk then and not inside an output of a job running then
    finished = {p: r for p, r in at_kill.items() if not is_leftover(p) and not under(p, incomplete)}
    redone = [p for p, r in finished.items() if p not in final or (final[p]["inode"], final[p]["mtime_ns"]) != (r["inode"], r["mtime_ns"])]
    record["finished_files_at_kill"] = len(finished)
    record["cached_images_at_kill"] = sum(in_cache(p) for p in finished)
    record["redone"] = redone
    record["resume_generation"] = cache_counts(workdir)
    record["passed"] = not (record["missing_or_extra"] or record["differing"] or redone or record["results_leftovers"])
    if not keep:
        shutil.rmtree(workdir)
    return record


def markdown(report: dict) -> str:
    lines = [
        f"# Kill and resume ({report['date']})",
        "",
        f"- machine: {report['machine']}",
        f"- command: `{report['command']}`",
        (f"- config: `{report['configfile']}`, target `{report['target']}`; reference run {report['reference_s'] or 'reused'} s, "
         f"{report['reference_artifacts']} files under results/"),
        (f"- **{sum(bool(t.get('passed')) for t in report['trials'])} of {len(report['trials'])} trials passed**: "
         "completed after `--unlock` and `--rerun-incomplete`, every file under results/ byte-identical to the "
         "uninterrupted run, no file finished before the kill rewritten"),
        "",
        "| trial | stage | signal | kill after job start (s, share of its reference time) | stage's job still running | jobs killed | files finished at kill (cached images) | redone | differing | resume s | resumed generation: reused / generated |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["trials"]:
        generation = ", ".join(f"{k}: {v['reused']} / {v['generated']}" for k, v in t.get("resume_generation", {}).items()) or "-"
        killed = ", ".join(t.get("jobs_running_at_kill", []))
        lines.append(
            f"| {t['trial']} | {t['stage']} | {t['signal']} | {t['delay_s']} ({t['delay_fraction_of_job']:.0%}) | "
            f"{'yes' if t.get('stage_job_running_at_kill') else 'no: ' + t.get('note', 'finished, a later job was killed')} | {killed} | "
            f"{t.get('finished_files_at_kill', '-')} ({t.get('cached_images_at_kill', '-')}) | {len(t.get('redone', []))} | "
            f"{len(t.get('differing', [])) + len(t.get('missing_or_extra', []))} | {t.get('resume_s', '-')} | {generation} |"
        )
    cache_leftovers = sum(t.get("cache_leftovers", 0) for t in report["trials"])
    lines += ["", "Leftovers: hidden temporary files and staging folders of killed writers are removed by the job that",
              f"next writes the same output; the image cache's (never read) are counted: {cache_leftovers} over all trials.", ""]
    return "\n".join(lines)


