"""What a user reads last when a run fails: each failed job's cause repeated below Snakemake's own
lines (the Snakefile's `onerror:`, detdistill.workflow.report_failed_jobs), and one line naming
the file, line and column of a config file that does not parse (check_config_files)."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

from detdistill import workflow
from detdistill.workflow import (
    check_config_files,
    failed_job_line,
    failed_job_lines,
    failed_jobs_in_main_log,
    log_cause,
    report_failed_jobs,
)

from conftest import REPO, SNAKEMAKE, assert_stops_with, copy_workflow, snakemake

TINY = yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())["datasets"]["tiny"]


# --------------------------------------------------------------------------- config files
def stopped_line(paths, capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        check_config_files(paths)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


@pytest.mark.parametrize(
    "text, expected",
    [
        # an unclosed list: PyYAML finds the problem on the line after, and says where the list began
        ("seed: 0\ndevice: [cpu, cuda\nruns: 2\n",
         "is not valid YAML: line 3, column 5: expected ',' or ']', but got ':' (while parsing a flow sequence that started at line 2, column 9)"),
        ("datasets:\n\tmine: {}\n", "is not valid YAML: line 2, column 1: found character '\\t' that cannot start any token"),
        ("seed: 0\n device: cpu\n", "is not valid YAML: line 2, column 8: mapping values are not allowed here"),
        ("- seed\n- device\n", "holds a list, not a mapping of config keys"),
        ("just words\n", "holds a str, not a mapping of config keys"),
        ("# all commented out\n", "holds no config keys (it is empty or all comments)"),
    ],
)
def test_a_config_file_that_does_not_parse_is_one_line(tmp_path, capsys, text, expected):
    good, bad = tmp_path / "good.yaml", tmp_path / "mine.yaml"
    good.write_text("seed: 0\n")
    bad.write_text(text)
    line = stopped_line([good, bad], capsys)
    assert line.startswith(f"error: config file {bad} ") and expected in line, line


def test_config_files_that_parse_pass(tmp_path, capsys):
    """JSON indented with tabs, which Snakemake reads (it tries JSON first) though PyYAML rejects
    it, passes; a missing file is left to Snakemake (skipped when --configfile is given)."""
    json_file, yaml_file = tmp_path / "c.json", tmp_path / "c.yaml"
    json_file.write_text('{\n\t"seed": 1\n}\n')
    yaml_file.write_text("seed: 1\ndatasets: {}\n")
    paths = [json_file, yaml_file, tmp_path / "absent.yaml"]
    assert check_config_files(iter(paths)) == paths  # each checked, and all handed on to `configfile:`
    assert capsys.readouterr().err == ""


def test_the_snakefile_checks_its_config_files_first(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    noise = workdir / "config" / "noise.yaml"
    noise.write_text(noise.read_text() + "broken: [1, 2\nnext: 3\n")
    lines = len(noise.read_text().splitlines())
    proc = snakemake(workdir, "-n", check=False)
    assert_stops_with(proc, "config file config/noise.yaml is not valid YAML", f"line {lines}, column 5", "expected ',' or ']'")


def test_a_broken_configfile_option_is_snakemakes_message(tmp_path):
    """--configfile files are parsed before any workflow code runs, so the workflow cannot name the
    file: what the user sees is Snakemake's own message (the docs quote it). If this fails,
    Snakemake's message changed: update the docs."""
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "mine.yaml").write_text("seed: [0\n")
    proc = subprocess.run([*SNAKEMAKE, "--cores", "1", "-n", "--configfile", "mine.yaml"], cwd=workdir,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "WorkflowError:\nConfig file is not valid JSON or YAML." in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- a job's cause from its log
def job_log(tmp_path: Path, name: str, body: str) -> str:
    """A job's real log: a Python process logging as a job does (workflow.setup: LOG_FORMAT,
    `_user_error_hook`, the exit-time peak-RSS line after the error), running `body`."""
    log = tmp_path / f"{name}.log"
    script = (
        "import atexit, logging, sys\n"
        "from detdistill import workflow\n"
        "from detdistill.data import DataError\n"
        f"logging.basicConfig(level=logging.INFO, format=workflow.LOG_FORMAT, filename={str(log)!r})\n"
        "sys.stderr = open(logging.getLogger().handlers[0].baseFilename, 'a', buffering=1)\n"
        "sys.excepthook = workflow._user_error_hook\n"
        "logger = logging.getLogger('detdistill')\n"
        "atexit.register(lambda: logger.info('peak RSS (kernel high-water mark): 1.0 MiB'))\n"
        "logger.info('rule x, wildcards {}')\n" + body
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    return log.read_text()


def test_bad_input_is_the_logged_error_line(tmp_path):
    text = job_log(tmp_path, "input", "logger.error('an earlier, handled error')\nraise DataError('2 of 14 image files cannot be read: a.png')\n")
    assert text.splitlines()[-1].endswith("peak RSS (kernel high-water mark): 1.0 MiB")  # the error is not the last line
    assert log_cause(text) == ("input", "2 of 14 image files cannot be read: a.png")


def test_a_bug_is_the_last_tracebacks_exception(tmp_path):
    body = "try:\n    {}['a']\nexcept KeyError:\n    raise ValueError('shapes (2, 3) and (4,) differ')\n"
    text = job_log(tmp_path, "bug", "logger.error('a logged error before the bug')\n" + body)
    assert "During handling of the above exception" in text  # two tracebacks: the last one counts
    assert log_cause(text) == ("bug", "ValueError: shapes (2, 3) and (4,) differ")
    assert log_cause("2024-01-01 10:00:00,000 INFO detdistill: started\n") is None


def test_failed_job_line_says_where_to_look(tmp_path):
    empty, silent = tmp_path / "empty.log", tmp_path / "silent.log"
    empty.write_text("")
    silent.write_text("2024-01-01 10:00:00,000 INFO detdistill: epoch 3\n")
    bug = tmp_path / "bug.log"
    bug.write_text(job_log(tmp_path, "b", "raise KeyError('label')\n"))
    assert failed_job_line("train", [bug]) == (
        f"error in rule train ({bug}): KeyError: 'label' (an unexpected error, not bad input: its traceback is in that log)")
    # the log that names the cause, of a job's several
    assert failed_job_line("train", [silent, bug]).startswith(f"error in rule train ({bug}): KeyError: 'label'")
    assert failed_job_line("train", [tmp_path / "absent.log"]).endswith("the job failed before writing its log " + str(tmp_path / "absent.log") + ": Snakemake's messages above say why")
    assert "failed before writing its log" in failed_job_line("train", [empty])
    assert "ended without an error message in its log" in failed_job_line("train", [silent])
    assert failed_job_line("train", []) == "error in rule train: the job failed and has no log file: Snakemake's messages above say why"


# --------------------------------------------------------------------------- finding the failed jobs
def fake_job(rule: str, *logs) -> SimpleNamespace:
    return SimpleNamespace(rule=SimpleNamespace(name=rule), log=list(logs))


def test_failed_jobs_from_the_scheduler_and_in_groups(tmp_path):
    bad = tmp_path / "bad.log"
    bad.write_text("2024-01-01 10:00:00,000 ERROR detdistill: folder x holds no images\n")
    not_run = tmp_path / "not_run.log"
    group = SimpleNamespace(jobs=[fake_job("upstream", bad), fake_job("downstream", not_run)], log=[])
    wf = SimpleNamespace(scheduler=SimpleNamespace(failed=[group, fake_job("zeta", not_run)]))  # a set in Snakemake
    # the group's job that ran and failed; its never-started neighbour is left out
    assert failed_job_lines(wf, []) == [
        f"error in rule upstream ({bad}): folder x holds no images",
        f"error in rule zeta: the job failed before writing its log {not_run}: Snakemake's messages above say why",
    ]


def test_report_failed_jobs_never_raises(monkeypatch, capsys):
    registered = []
    monkeypatch.setattr(workflow.atexit, "register", lambda func, *args: registered.append((func, args)))

    class Broken:
        @property
        def failed(self):
            raise RuntimeError("scheduler changed")

    report_failed_jobs(SimpleNamespace(scheduler=Broken()), log=[])
    (print_at_exit, args), = registered
    print_at_exit(*args)
    assert capsys.readouterr().err == "error: could not list the failed jobs (RuntimeError: scheduler changed): their errors are above\n"
    monkeypatch.setattr(sys, "stderr", None)  # nowhere to print at exit: still no exception
    print_at_exit(*args)
    monkeypatch.undo()
    monkeypatch.setattr(workflow.atexit, "register", lambda func, *args: registered.append((func, args)))
    registered.clear()
    report_failed_jobs(SimpleNamespace(scheduler=SimpleNamespace(failed=set())), log=[])  # a Ctrl-C: nothing to say
    assert registered == []


def make_corrupt_folder(root: Path) -> Path:
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (60 * i, 90, 30)).save(root / split / name / f"{i}.png")
    (root / "train" / "dog" / "fake.png").write_text("not a png")
    return root


def last_lines(proc: subprocess.CompletedProcess, count: int) -> list[str]:
    """The last `count` non-empty lines the user sees: Snakemake writes everything to stderr."""
    assert proc.returncode == 1 and proc.stdout.strip() == "", proc.stdout[-2000:]
    return [line for line in proc.stderr.splitlines() if line.strip()][-count:]


def test_the_cause_is_the_last_line_of_a_failed_run(tmp_path):
    """A real run: bad input in one job (--keep-going lets the others fail too), a bug in another
    (a patched script), a third killed before it logs: each one line, below Snakemake's own."""
    workdir = copy_workflow(tmp_path / "wf")
    script = workdir / "workflow" / "scripts" / "prepare_data.py"
    script.write_text(script.read_text().replace(
        "setup(snakemake)\n",
        "import os\nif snakemake.wildcards.dataset == 'killed':\n    os._exit(9)\nsetup(snakemake)\n"
        "if snakemake.wildcards.dataset == 'buggy':\n    raise KeyError('no_such_column')\n"))
    data = make_corrupt_folder(workdir / "data")
    entry = {**TINY, "source": {"kind": "imagefolder", "root": str(data)}}
    (workdir / "mine.yaml").write_text(yaml.safe_dump({"datasets": {"corrupt": entry, "buggy": entry, "killed": entry}}))
    log = workdir / "logs" / "prepare_data" / "corrupt.log"

    def cause() -> str:
        """The job's own one line, the DataError it logged."""
        (line,) = [line for line in log.read_text().splitlines() if " ERROR " in line]
        assert "1 of 9 image files cannot be read" in line and str(data / "train" / "dog" / "fake.png") in line
        return line.split(" ERROR detdistill: ", 1)[1]

    proc = snakemake(workdir, "results/corrupt/data/manifest.parquet", "--configfile", "mine.yaml", check=False)
    (last,) = last_lines(proc, 1)
    assert last == f"error in rule prepare_data (logs/prepare_data/corrupt.log): {cause()}", proc.stderr[-3000:]
    assert "Complete log(s):" in proc.stderr and "WorkflowError" in proc.stderr  # still there, above

    targets = [f"results/{name}/data/manifest.parquet" for name in ("corrupt", "buggy", "killed")]
    proc = snakemake(workdir, *targets, "--keep-going", "--configfile", "mine.yaml", check=False)
    buggy, corrupt, killed = last_lines(proc, 3)
    assert buggy == ("error in rule prepare_data (logs/prepare_data/buggy.log): KeyError: 'no_such_column' "
                     "(an unexpected error, not bad input: its traceback is in that log)")
    assert corrupt == f"error in rule prepare_data (logs/prepare_data/corrupt.log): {cause()}"
    assert killed.startswith("error in rule prepare_data: the job failed before writing its log logs/prepare_data/killed.log")
    # the fallback reading Snakemake's main log finds the same jobs as its scheduler
    main_log = proc.stderr.split("Complete log(s): ")[1].splitlines()[0]
    assert sorted((rule, logs[0]) for rule, logs in failed_jobs_in_main_log([main_log])) == [
        ("prepare_data", f"logs/prepare_data/{name}.log") for name in ("buggy", "corrupt", "killed")]
