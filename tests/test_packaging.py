"""The declared software agrees with itself: pyproject.toml's bounds, the pins in envs/ and the
conda environment every rule names. A package added to one and forgotten in another fails here.
And the package installs as a wheel that runs the workflow without the checkout's detdistill/."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
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


WHERE_RULE = '''

rule where_is_detdistill:
    output:
        "where.txt",
    script:
        "where.py"
'''


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The package built as a wheel (from a copy of its sources: the checkout gets no build/ folder)
    and installed into a folder of its own: (the wheel, the folder)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "detdistill", source / "detdistill", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # the build backend of the environment: no download
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(root / "dist")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (root / "dist").glob("detdistill-*.whl")
    site = root / "site"
    install = subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return wheel, site


def test_wheel_ships_the_schema_and_the_testing_helpers(installed_wheel):
    wheel, site = installed_wheel
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"detdistill/schema.yaml", "detdistill/testing/__init__.py", "detdistill/testing/sd_shapes.py"} <= names
    assert (site / "detdistill" / "schema.yaml").read_bytes() == (REPO / "config" / "schema.yaml").read_bytes()
    # one file: the checkout's config/schema.yaml is a link to the package's
    assert (REPO / "config" / "schema.yaml").resolve() == (REPO / "detdistill" / "schema.yaml").resolve()


def test_installed_wheel_runs_the_workflow_without_the_checkout(installed_wheel, tmp_path):
    """The workflow's files without detdistill/ and the package from the wheel alone (PYTHONPATH
    before the editable install): the default target's dry run plans, a real stage writes its
    artifact, and a job imports detdistill from the wheel's folder, defaults and all."""
    _, site = installed_wheel
    workdir = copy_workflow(tmp_path / "workflow_copy")
    assert not (workdir / "detdistill").exists() and (workdir / "config" / "schema.yaml").is_file()
    with open(workdir / "Snakefile", "a") as snakefile:
        snakefile.write(WHERE_RULE)
    (workdir / "where.py").write_text(
        "from pathlib import Path\n\nimport detdistill\nfrom detdistill.schema import SCHEMA, defaults\n\n"
        "Path(snakemake.output[0]).write_text(f\"{detdistill.__file__}\\n{SCHEMA}\\n{defaults('train')['epochs']}\\n\")\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args):
        proc = subprocess.run([*SNAKEMAKE, *args, "--cores", "1"], cwd=workdir, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"snakemake {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    assert "prepare_data" in run("--dry-run")  # the default target, results/digits_ipc10.csv
    run("where.txt", "results/digits/data/manifest.parquet")
    module, schema, epochs = (workdir / "where.txt").read_text().splitlines()
    assert Path(module).is_relative_to(site) and Path(schema) == site / "detdistill" / "schema.yaml"
    train = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["$defs"]["train"]["properties"]
    assert int(epochs) == train["epochs"]["default"]
    manifest = pd.read_parquet(workdir / "results" / "digits" / "data" / "manifest.parquet")
    assert len(manifest) == 1797 and set(manifest.split) >= {"train", "test"}
