"""Checks on the real CIFAR-10 archive in ../shared/data (skipped where it is absent).

Run with: .venv/bin/python -m pytest -m realdata
"""

import tarfile

import pytest

from detdistill.data import build_manifest, load_images

from conftest import REPO

ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not ARCHIVE.exists(), reason=f"{ARCHIVE} not present (only on development machines and CI)"),
]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(root, filter="data")
    return root / "cifar10"


def test_cifar10_manifest_from_jpeg_tree(cifar_root):
    source = {"kind": "cifar10", "root": str(cifar_root), "classes_file": str(REPO / "resources/classes/cifar10.csv")}
    manifest = build_manifest(source, seed=0)
    assert manifest.groupby("split").size().to_dict() == {"test": 10_000, "train": 50_000}
    assert (manifest[manifest.split == "train"].groupby("label").size() == 5_000).all()
    assert manifest.class_name.iloc[0] == "airplane"
    images = load_images(manifest.iloc[:8], source, 32)
    assert images.shape == (8, 3, 32, 32)


def _workflow_with_cifar(tmp_path, cifar_root):
    """A copy of the workflow under tmp_path/wf with the CIFAR-10 tree at data/cifar10, as the
    benchmark configs expect it."""
    from conftest import copy_workflow

    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "data").mkdir()
    (workdir / "data" / "cifar10").symlink_to(cifar_root)
    return workdir


def test_cifar10_benchmark_config_builds_its_dag(cifar_root, tmp_path):
    from conftest import snakemake

    workdir = _workflow_with_cifar(tmp_path, cifar_root)
    out = snakemake(workdir, "results/cifar10_ipc10.csv", "results/cifar10_ipc50.csv", "-n",
                    "--configfile", "config/bench/cifar10_embedded.yaml").stdout
    assert "prepare_generator" in out and "evaluate_full" in out


def _documented_commands(overlay):
    """The snakemake command lines an overlay's header comment prints, as argument lists (after
    `snakemake`, less `--cores 2`, which the test helper passes)."""
    import shlex

    commands = []
    for line in overlay.read_text().splitlines():
        if line.startswith("#") and ".venv/bin/snakemake " in line:
            args = shlex.split(line.split(".venv/bin/snakemake ", 1)[1])
            at = args.index("--cores")
            commands.append(args[:at] + args[at + 2:])
    return commands


@pytest.mark.parametrize("overlay", sorted(p.name for p in (REPO / "config" / "bench").glob("noise_cifar10_*.yaml")))
def test_noise_overlay_commands_work_as_printed(overlay, cifar_root, tmp_path):
    """Each CIFAR-10 label-noise overlay prints the command that made its measurement: as printed
    (from the repository root, ../shared beside it), it builds a DAG that runs the noise
    experiment; an overlay naming a file or key that is not there stops it."""
    from conftest import snakemake

    commands = _documented_commands(REPO / "config" / "bench" / overlay)
    assert commands, f"{overlay} prints no .venv/bin/snakemake command"
    workdir = _workflow_with_cifar(tmp_path, cifar_root)
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")  # ../shared as from the repository
    for args in commands:
        out = snakemake(workdir, *args, "-n").stdout
        assert "prepare_generator" in out and "evaluate" in out, out[-3000:]
        if args[0].startswith("results/experiments/"):
            assert "noise_experiment" in out
