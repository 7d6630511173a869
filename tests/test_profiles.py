"""Profiles and documented commands name what exists and parse as the README prints them."""

import re
import subprocess

import yaml

from conftest import REPO, SNAKEMAKE

# Snakemake 9 options that take every following word as their value: a target after them is lost
GREEDY = ("--resources", "--configfile", "--configfiles", "--config", "--set-resources")


def _rules() -> set[str]:
    out = subprocess.run([*SNAKEMAKE, "--list-rules"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def _loaded_rules() -> list:
    """The workflow's rules as Snakemake parses them (directives, declared resources)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet=set())) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(), snakefile=REPO / "Snakefile", workdir=REPO)
        return list(workflow._workflow.rules)


def test_every_rule_named_in_a_profile_exists():
    rules = _rules()
    assert {"prepare_generator", "evaluate", "train_classifier"} <= rules
    for profile in (REPO / "profiles").glob("*/config.yaml"):
        named = set((yaml.safe_load(profile.read_text()) or {}).get("set-resources", {}))
        assert named <= rules, f"{profile}: unknown rules {sorted(named - rules)}"


def test_readme_commands_put_targets_before_greedy_options():
    """`snakemake --cores 1 --resources gpu=1 results/x.csv` parses the target as a resource."""
    documents = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for line in (line for document in documents for line in document.read_text().splitlines()):
        command = line.split("#")[0]
        if "snakemake " not in command:
            continue
        words = command.split()
        for i, word in enumerate(words):
            if word in GREEDY:
                rest = words[i + 1:]
                stop = rest.index("--") if "--" in rest else len(rest)
                after = [w for w in rest[:stop] if not w.startswith("-")][1:]
                assert not any(re.match(r"results/", w) for w in after), f"target after {word}: {line}"


def test_imagenette_wnids_match_fastai_label_files():
    """The shipped class tables name the wnids of fastai's imagenette2 / imagewoof2 folders (the
    noisy-label CSVs list their paths); a wrong wnid would make a real folder fail to load."""
    import gzip

    import pandas as pd
    import pytest

    shared = REPO.parent / "shared" / "data"
    for name in ("imagenette", "imagewoof"):
        labels = shared / f"noisy_{name}.csv.gz"
        if not labels.exists():
            pytest.skip(f"{labels} absent")
        with gzip.open(labels, "rt") as f:
            wnids = {p.split("/")[1] for p in pd.read_csv(f).path}
        table = pd.read_csv(REPO / "resources" / "classes" / f"{name}.csv")
        assert set(table.wnid) == wnids, name


def test_rules_declare_only_portable_resources():
    """Executor-specific resources (slurm_partition, gres, gpu_manufacturer...) belong in the
    profiles; a rule that names one ties the workflow to one cluster kind."""
    portable = {"gpu", "mem_mb", "runtime"}  # threads is a directive of its own
    snakemakes_own = {"_cores", "_nodes", "tmpdir"}
    rules = {rule.name: set(rule.resources) - snakemakes_own for rule in _loaded_rules()}
    assert {"gpu"} <= rules["train_classifier"]
    odd = {name: sorted(used - portable) for name, used in rules.items() if used - portable}
    assert not odd, f"rules declaring non-portable resources: {odd}"


def test_every_rule_runs_on_one_thread():
    """A job's float results depend on its torch thread count, which Snakemake caps at --cores: a
    rule with two threads would make the detector, hence the flagged images, differ between
    `--cores 1` and `--cores 2` (and a two-thread job waits for two free cores while one-thread
    evaluations hold one). More threads are the user's choice (`--set-threads`)."""
    threads = {rule.name: rule.resources["_cores"] for rule in _loaded_rules()}
    assert threads["train_classifier"] == 1 and threads["evaluate"] == 1
    assert {name: n for name, n in threads.items() if n != 1} == {}
