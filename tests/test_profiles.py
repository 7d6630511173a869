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


def test_every_rule_named_in_a_profile_exists():
    rules = _rules()
    assert {"prepare_generator", "evaluate", "train_classifier"} <= rules
    for profile in (REPO / "profiles").glob("*/config.yaml"):
        named = set((yaml.safe_load(profile.read_text()) or {}).get("set-resources", {}))
        assert named <= rules, f"{profile}: unknown rules {sorted(named - rules)}"


def test_readme_commands_put_targets_before_greedy_options():
    """`snakemake --cores 1 --resources gpu=1 results/x.csv` parses the target as a resource."""
    for line in (REPO / "README.md").read_text().splitlines():
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
