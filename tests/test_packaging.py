"""The declared software agrees with itself: pyproject.toml's bounds, the pins in envs/ and the
conda environment every rule names. A package added to one and forgotten in another fails here."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import SNAKEMAKE, copy_workflow

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

REPO = Path(__file__).resolve().parents[1]
CONDA_ENV = REPO / "workflow" / "envs" / "detdistill.yaml"


def pins(lines) -> dict[str, str]:
    """{canonical name: version} of `name==version` lines; anything else but comments is an error."""
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier  # exactly one `==`: a pin
        assert specifier.operator == "==", f"{line!r} is not pinned with =="
        name = canonicalize_name(requirement.name)
        assert name not in found, f"{name} is pinned twice"
        found[name] = specifier.version
    return found


def requirement_lines(path: Path) -> tuple[list[str], list[str]]:
    """(`-r` includes, the other lines) of a pip requirements file."""
    lines = path.read_text().splitlines()
    includes = [line.split(None, 1)[1] for line in lines if line.startswith("-r ")]
    return includes, [line for line in lines if not line.startswith("-r ")]


def specifiers(requirements: list[str]) -> dict[str, SpecifierSet]:
    parsed = [Requirement(text) for text in requirements]
    return {canonicalize_name(requirement.name): requirement.specifier for requirement in parsed}


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def runtime_pins():
    includes, lines = requirement_lines(REPO / "envs" / "requirements.txt")
    assert not includes
    return pins(lines)


@pytest.fixture(scope="module")
def dev_pins():
    includes, lines = requirement_lines(REPO / "envs" / "requirements-dev.txt")
    assert includes == ["requirements.txt"], "requirements-dev.txt starts from the runtime pins"
    return pins(lines)


def assert_pins_satisfy(declared: dict[str, SpecifierSet], pinned: dict[str, str], where: str):
    assert sorted(declared) == sorted(pinned), f"{where} and its pins name different packages"
    for name, specifier in declared.items():
        assert specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} does not satisfy {where}'s {name}{specifier}"
        )


def test_runtime_pins_satisfy_pyproject_dependencies(project, runtime_pins):
    assert_pins_satisfy(specifiers(project["dependencies"]), runtime_pins, "pyproject.toml dependencies")


def test_dev_pins_satisfy_the_dev_extra(project, runtime_pins, dev_pins):
    assert_pins_satisfy(specifiers(project["optional-dependencies"]["dev"]), dev_pins, "the dev extra")
    assert not set(dev_pins) & set(runtime_pins), "a development pin repeats a runtime one"


def test_slurm_pins_satisfy_the_slurm_extra(project, runtime_pins):
    includes, lines = requirement_lines(REPO / "envs" / "slurm.txt")
    assert not includes, "slurm.txt is installed beside requirements.txt, not on top of it"
    slurm_pins = pins(lines)
    assert_pins_satisfy(specifiers(project["optional-dependencies"]["slurm"]), slurm_pins, "the slurm extra")
    assert not set(slurm_pins) & set(runtime_pins), "a SLURM pin repeats a runtime one"


def test_conda_environment_mirrors_the_runtime_pins(project, runtime_pins):
    environment = yaml.safe_load(CONDA_ENV.read_text())
    conda_packages = [item for item in environment["dependencies"] if isinstance(item, str)]
    (pip_section,) = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    assert pins(pip_section) == runtime_pins
    (python,) = [package for package in conda_packages if package.startswith("python=")]
    python_version = python.split("=", 1)[1]
    assert SpecifierSet(project["requires-python"]).contains(python_version + ".0")


def test_every_rule_declares_the_conda_environment():
    """`snakemake --lint` (in .ci/run) wants a conda: directive; this checks each one names the file
    above, relative to its rule file, so a moved or misspelt path cannot pass."""
    rules_with_jobs, environments = 0, []
    for rule_file in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = rule_file.read_text()
        rules_with_jobs += len(re.findall(r"^    (?:script|shell|run):", text, flags=re.MULTILINE))
        for env in re.findall(r'^    conda:\s*\n\s*"([^"]+)"', text, flags=re.MULTILINE):
            environments.append((rule_file.name, env, (rule_file.parent / env).resolve()))
    assert rules_with_jobs > 0
    assert len(environments) == rules_with_jobs, "a rule runs a job without a conda: directive"
    for rule_file, env, resolved in environments:
        assert resolved == CONDA_ENV, f"{rule_file}: conda: {env!r} is not workflow/envs/detdistill.yaml"


def test_one_version_everywhere(project):
    """A release bumps pyproject.toml, the package and CITATION.cff together."""
    import detdistill

    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert project["version"] == detdistill.__version__ == citation["version"]
    assert project["license"] == citation["license"]


def test_snakemake_lint_passes(tmp_path):
    """CI's `snakemake --lint` gate, in the test run too: its checks are regexes over the rule files'
    text, so even a comment can fail it (one reading "rule declares `threads: 1`" in common.smk
    matched its "rule ...:" pattern and made common.smk look like rules mixed with functions)."""
    workdir = copy_workflow(tmp_path / "workflow_copy")
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, f"snakemake --lint:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
