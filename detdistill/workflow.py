"""Glue between Snakemake and the library: the `script:` object's set-up, and bad input stopped
with one line (the cause and the fix) instead of a traceback, both while the DAG is built and
inside jobs."""

from __future__ import annotations

import atexit
import difflib
import logging
import os
import re
import resource
import sys
from pathlib import Path
from typing import NoReturn

from .data import DataError


def stop(message: str) -> NoReturn:
    """End Snakemake with one line on stderr. Raised exceptions are not: Snakemake prints an
    exception from the Snakefile with its file and line, and one from an input function wrapped in
    an InputFunctionException with a traceback; a SystemExit passes through both unchanged."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _user_error_hook(exc_type, exc, tb) -> None:
    """A job's uncaught DataError (bad input, not a bug) becomes one log line; Python then exits 1."""
    if issubclass(exc_type, DataError):
        logging.getLogger("detdistill").error("%s", exc)
    else:
        sys.__excepthook__(exc_type, exc, tb)


#: every job's log lines (`setup`); `_LOGGED_ERROR` reads its ERROR lines back
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LOGGED_ERROR = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:ERROR|CRITICAL) [^\s:]+: (.*)$", re.M)


#: the line each job's log ends with; bench/memory_cifar10.py reads it
PEAK_RSS_PREFIX = "peak RSS (kernel high-water mark):"


#: the line a job that used CUDA logs at its end; bench/rehearsal.py reads it
PEAK_GPU_PREFIX = "peak GPU memory (torch's allocator):"


def peak_gpu_line() -> str | None:
    """`PEAK_GPU_PREFIX` with the process's peak CUDA memory allocated and reserved by torch's
    caching allocator (MiB), or None when the job never initialised CUDA: what decides how many
    GPU jobs can share one card (`--resources gpu=N`)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    mib = 2**20
    try:
        allocated, reserved = torch.cuda.max_memory_allocated() / mib, torch.cuda.max_memory_reserved() / mib
    except RuntimeError:  # a job ending on a CUDA error: its own message says what went wrong
        return None
    return f"{PEAK_GPU_PREFIX} {allocated:.1f} MiB allocated, {reserved:.1f} MiB reserved"


#: `peak_gpu_line`'s line read back: (allocated, reserved) MiB
PEAK_GPU_PATTERN = re.compile(re.escape(PEAK_GPU_PREFIX) + r" ([0-9.]+) MiB allocated, ([0-9.]+) MiB reserved")


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB, from the kernel: exact, unlike Snakemake's
    `benchmark:` max_rss, which samples every 30 s after a job's first 15 s and so can miss a
    short peak. On Linux it is VmHWM, the high-water mark of this program's own address space:
    `getrusage` ru_maxrss also keeps the RSS of the process image that exec replaced, so a job
    spawned by a large parent (Snakemake, a pytest run) would report the parent's size."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes


def setup(snakemake) -> logging.Logger:
    """Send logging, warnings and tqdm (stderr) to the rule's log file; honour `threads:` and the
    config's `device`; bad input ends the job with one line in its log."""
    import torch

    from . import pixel_cache
    from .device import configure_device

    log_path = snakemake.log[0]
    # open for the rest of the job: it becomes the process's stderr
    stream = open(log_path, "w", buffering=1)  # noqa: SIM115
    sys.stderr = stream
    sys.excepthook = _user_error_hook
    logging.basicConfig(
        level=logging.INFO,
        format=LOG_FORMAT,
        handlers=[logging.StreamHandler(stream)],
        force=True,
    )
    logging.captureWarnings(True)
    torch.set_num_threads(max(1, int(snakemake.threads)))
    logger = logging.getLogger("detdistill")
    logger.info("rule %s, wildcards %s, threads %s", snakemake.rule, dict(snakemake.wildcards), snakemake.threads)
    store = {"folder": "results/pixel_cache", "min_images": 1000, **snakemake.config.get("pixel_cache", {})}
    pixel_cache.configure(store["folder"], store["min_images"])
    requested = snakemake.config.get("device", "auto")
    # a rule that claims no GPU (no `gpu` resource) computes on the CPU whatever `device` says: on a
    # cluster it is given no GPU (so `device: cuda` would stop it), and on one machine Snakemake's
    # count of GPU jobs (--resources gpu=N) must stay true
    claims_gpu = bool(getattr(getattr(snakemake, "resources", None), "gpu", 0))
    device = configure_device(requested if claims_gpu else "cpu")
    if not claims_gpu:
        logger.info("rule %s claims no GPU (no `gpu` resource): running on the CPU", snakemake.rule)
    elif requested == "auto" and device.type == "cpu":
        logger.info("no CUDA GPU visible: running on the CPU (config `device: auto`; `device: cuda` stops instead)")
    # registered after logging's own exit hook, so it runs first (atexit is last-in, first-out)
    atexit.register(lambda: logger.info("%s %.1f MiB", PEAK_RSS_PREFIX, peak_rss_mb()))
    atexit.register(lambda: (line := peak_gpu_line()) and logger.info("%s", line))
    return logger


# --------------------------------------------------------------------------- config
def check_config_files(paths) -> list:
    """`paths`, once each existing one parses as a mapping; else stop with one line naming the file,
    the line and column, and what the parser expected (Snakemake's `configfile:` says only "Config
    file is not valid JSON or YAML", without the file). A missing file is left to Snakemake, which
    names it, or skips it when `--configfile` is given."""
    import json

    import yaml

    paths = list(paths)
    for path in map(Path, paths):
        if not path.exists():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            stop(f"config file {path} cannot be read as UTF-8 text ({error}): fix or replace it")
        try:
            content = json.loads(text)  # Snakemake tries JSON first: JSON indented with tabs is no YAML
        except ValueError:
            try:
                content = yaml.safe_load(text)
            except yaml.YAMLError as error:
                stop(f"config file {path} is not valid YAML: {describe_yaml_error(error)}; fix it there")
        if content is None:
            stop(f"config file {path} holds no config keys (it is empty or all comments): write `key: value` lines at its top level")
        if not isinstance(content, dict):
            stop(f"config file {path} holds a {type(content).__name__}, not a mapping of config keys: write `key: value` lines at its top level")
    return paths


def describe_yaml_error(error) -> str:
    """Where a YAML parse error is and what the parser expected, 1-based as editors count."""
    problem_mark, context_mark = getattr(error, "problem_mark", None), getattr(error, "context_mark", None)
    if problem_mark is None:
        return str(error).replace("\n", " ")
    where = f"line {problem_mark.line + 1}, column {problem_mark.column + 1}"
    context = ""
    if error.context:
        started = f" that started at line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark else ""
        context = f" ({error.context}{started})"
    return f"{where}: {error.problem}{context}"


def check_config(config: dict, schema_path: str | os.PathLike) -> dict:
    """The schema, once `config` passes it; else stop with one line naming the first key it
    rejects and the fix (Snakemake's `validate` prints the whole schema and config after its
    message: 500-1,000 lines)."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if errors:
        stop(describe_config_error(errors))
    return schema


def check_writable(folders) -> None:
    """Stop with one line when an output folder (or, before it exists, the folder it will be made
    in) cannot be written: Snakemake would fail only at the first job, with a traceback."""
    for folder in map(Path, folders):
        existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
        if not existing.is_dir():
            stop(f"{existing} is not a folder, but the workflow writes {folder}/ there: move the file away")
        if not os.access(existing, os.W_OK | os.X_OK):
            stop(f"folder {existing.absolute()} is not writable: fix its permissions, or run from a folder you can write")


def _key(path) -> str:
    return ".".join(map(str, path)) or "(top level)"


def describe_config_error(errors) -> str:
    """One line for a list of jsonschema errors: an unknown key (with the closest allowed key) or
    a bad dataset name before anything else, since a misspelled key also reads as a missing one."""
    import jsonschema

    by_kind = {"unknown": [], "name": [], "other": []}
    for error in errors:
        kind = "unknown" if error.validator == "additionalProperties" else "name" if "propertyNames" in error.schema_path else "other"
        by_kind[kind].append(error)
    if by_kind["unknown"]:
        error = by_kind["unknown"][0]
        allowed = sorted(error.schema.get("properties", {}))
        unknown = min((k for k in error.instance if k not in allowed), key=str)
        key = _key([*error.absolute_path, unknown])
        close = difflib.get_close_matches(unknown, allowed, n=1)
        fix = f"did you mean `{close[0]}`?" if close else f"remove it (keys allowed there: {', '.join(allowed)})"
        return f"unknown config key `{key}`: {fix} (config/schema.yaml describes every key)"
    if by_kind["name"]:
        error = by_kind["name"][0]
        return (
            f"dataset name {error.instance!r} under `datasets:` is not allowed: it becomes part of file names and "
            f"targets (results/<name>_ipc10.csv), so use lowercase letters, digits and underscores, starting with a letter"
        )
    error = jsonschema.exceptions.best_match(by_kind["other"])
    key = _key(error.absolute_path)
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return f"config key `{_key([*error.absolute_path, missing[0]])}` is missing: add it (config/schema.yaml describes it)"
    value = repr(error.instance)
    value = value if len(value) <= 80 else value[:77] + "..."
    return f"config key `{key}` = {value} is not allowed: {error.message}; fix it in your config file (config/schema.yaml describes it)"


def split_evenly(items, parts: int) -> list[list]:
    """`items` cut into `parts` equal consecutive lists: a rule's flat input list of per-point (or
    per-construction) files, each point contributing the same files in the same order."""
    items = list(items)
    size, rest = divmod(len(items), parts)
    if rest:
        raise ValueError(f"{len(items)} inputs do not split into {parts} equal parts")
    return [items[i * size : (i + 1) * size] for i in range(parts)]


# --------------------------------------------------------------------------- failed jobs
def report_failed_jobs(workflow, log) -> None:
    """The Snakefile's `onerror:`. Repeat each failed job's cause as the very last lines of the
    run's output: Snakemake prints its own lines (RuleException, "Complete log", WorkflowError)
    after this hook, so the lines are printed at exit. Never raises: a bug here must not hide the
    jobs' own errors."""
    try:
        lines = failed_job_lines(workflow, log)
    except Exception as error:  # any bug here: say so, and keep Snakemake's output
        lines = [f"error: could not list the failed jobs ({type(error).__name__}: {error}): their errors are above"]
    if lines:
        atexit.register(_print_last, lines)


def _print_last(lines) -> None:
    try:
        sys.stderr.flush()
        print("\n".join(lines), file=sys.stderr, flush=True)
    except Exception:  # an exit hook's exception would end the output with a traceback
        pass


def failed_job_lines(workflow, main_log) -> list[str]:
    """One line per failed job (`failed_job_line`), sorted. The jobs come from Snakemake's
    scheduler, or, where a Snakemake version keeps them elsewhere, from its main log `main_log`
    (the `log` Snakemake passes to `onerror`: a path or a list of paths)."""
    failed = getattr(getattr(workflow, "scheduler", None), "failed", None)
    if failed is None:
        jobs = failed_jobs_in_main_log(main_log)
    else:
        jobs = []
        for job in failed:
            inner = list(getattr(job, "jobs", None) or [job])  # a group job: its jobs that say what failed
            named = [j for j in inner if any(log_cause(_read(f)) for f in j.log)]
            jobs += [(j.rule.name, [str(f) for f in j.log]) for j in (named or inner)]
    return [failed_job_line(rule, logs) for rule, logs in sorted({(rule, tuple(logs)) for rule, logs in jobs})]


#: a failed job in Snakemake's main log: "Error in rule NAME:" then indented fields, one of them
#: "log: a.log, b.log (check log file(s) for error details)"
_MAIN_LOG_ERROR = re.compile(r"^Error in rule (\S+):\n((?:[ \t]+.*\n?)*)", re.M)
_MAIN_LOG_LOGS = re.compile(r"^\s+log: (.*?)(?: \(check log file\(s\) for error details\))?$", re.M)


def failed_jobs_in_main_log(main_log) -> list[tuple[str, list[str]]]:
    """(rule, log files) of each "Error in rule" block of Snakemake's main log file(s)."""
    paths = [main_log] if isinstance(main_log, (str, os.PathLike)) else list(main_log or [])
    jobs = []
    for path in paths:
        for block in _MAIN_LOG_ERROR.finditer(_read(path)):
            logs = _MAIN_LOG_LOGS.search(block.group(2))
            jobs.append((block.group(1), logs.group(1).split(", ") if logs else []))
    return jobs


def _read(path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def log_cause(text: str) -> tuple[str, str] | None:
    """What ended a job, from its log: ("input", message) for the last ERROR line (bad input: a
    DataError logged by `_user_error_hook`), ("bug", exception line) for the last traceback,
    whichever comes later; None when there is neither."""
    causes = []
    logged = list(_LOGGED_ERROR.finditer(text))
    if logged:
        causes.append((logged[-1].start(), "input", logged[-1].group(1).strip()))
    start = text.rfind("Traceback (most recent call last):")
    if start >= 0:
        # the exception's own line: the first after the traceback that is not indented
        line = next((line for line in text[start:].splitlines()[1:] if line.strip() and not line[0].isspace()), None)
        if line:
            causes.append((start, "bug", line.strip()))
    return max(causes)[1:] if causes else None


def failed_job_line(rule: str, logs) -> str:
    """One line for a failed job: its log's cause (`log_cause`), else where to look."""
    logs = [str(f) for f in logs]
    if not logs:
        return f"error in rule {rule}: the job failed and has no log file: Snakemake's messages above say why"
    for path in logs:
        cause = log_cause(_read(path))
        if cause and cause[0] == "input":
            return f"error in rule {rule} ({path}): {cause[1]}"
        if cause:
            return f"error in rule {rule} ({path}): {cause[1]} (an unexpected error, not bad input: its traceback is in that log)"
    where = ", ".join(logs)
    if not any(Path(path).is_file() and Path(path).stat().st_size for path in logs):
        return f"error in rule {rule}: the job failed before writing its log {where}: Snakemake's messages above say why"
    return (
        f"error in rule {rule} ({where}): the job ended without an error message in its log (killed, for "
        f"instance for lack of memory?): read the log, and Snakemake's messages above for how it ended"
    )
