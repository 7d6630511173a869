import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_workflow(dest: Path) -> Path:
    """A temporary copy of the workflow (Snakefile, rules, config, profiles, shipped resources)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ["Snakefile", "workflow", "config", "profiles", "resources"]:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)
    shutil.copy2(REPO / "tests" / "config" / "tiny.yaml", dest / "tiny.yaml")
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-10000:]}")
    return proc


def planned_jobs(workdir, configfile, target="results/tiny_ipc2.csv") -> dict[str, int]:
    """Job counts of a dry run (`snakemake -n`), by rule; {} when nothing is to be done."""
    args = [target, "-n"] + (["--configfile", configfile] if configfile else [])
    out = snakemake(workdir, *args).stdout
    if "Job stats:" not in out:
        assert "Nothing to be done" in out, out[-3000:]
        return {}
    stats = out[out.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m.group(1) != "total"}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow run once on the tiny config; tests read its artifacts."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    snakemake(workdir, "results/tiny_ipc2.csv", "--configfile", "tiny.yaml")
    return workdir


def markdown_table_rows(text: str) -> list[list[str]]:
    """The cells of every header and body row of the pipe tables in `text` (separator rows left
    out), split at unescaped pipes, so an escaped `\\|` inside a class name stays in its cell."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in text.splitlines() if line.startswith("| ")]


def assert_stops_with(proc: subprocess.CompletedProcess, *expected: str) -> str:
    """A non-zero exit and exactly one `error:` line, holding every expected text; no traceback."""
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "Traceback" not in output and "Exception" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]
