"""The paper's ImageNette target, `results/imagenette_ipc10.csv`, through Snakemake with the sd15
backend: a tiny SD-shaped model saved like stable-diffusion-v1-5 and a tiny imagenette2 folder."""

import json
import shlex
import subprocess

import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO, SNAKEMAKE, copy_workflow, snakemake
from sd_fixtures import IMAGE_SIZE, make_tiny_sd, write_class_images

CLASSES = ["n01440764", "n03028079", "n03888257"]  # tench, church, parachute
TRAIN_PER_CLASS, VAL_PER_CLASS, IPC = 12, 4, 10
DATASET_SIZE = IMAGE_SIZE // 2


def readme_gpu_commands() -> list[list[str]]:
    """docs/reproduce.md's GPU commands for the ImageNette target, as printed (comments removed): the
    one-GPU command first, then the one that lets several GPU jobs share the card."""
    lines = [line.split("#")[0].strip() for line in (REPO / "docs" / "reproduce.md").read_text().splitlines()]
    commands = [shlex.split(line) for line in lines if "results/imagenette_ipc10.csv" in line and "--resources" in line]
    assert [c[-4:] for c in commands] == [["--cores", "1", "--resources", "gpu=1"], ["--cores", "12", "--resources", "gpu=6"]], (
        f"docs/reproduce.md: expected the one-GPU command and the shared-card one for the ImageNette target, got {commands}")
    for words in commands:
        assert words[0] == ".venv/bin/snakemake", words
    return [[*SNAKEMAKE, *words[1:]] for words in commands]


def make_imagenette2(root):
    """root/{train,val}/<wnid>/*.JPEG with a class-specific colour, varied size and noise."""
    return write_class_images(root, {"train": TRAIN_PER_CLASS, "val": VAL_PER_CLASS}, CLASSES)


@pytest.fixture(scope="module")
def sd_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("sd"))
    model = make_tiny_sd(workdir / "tiny-sd15")
    make_imagenette2(workdir / "data" / "imagenette2")
    small_train = {"epochs": 1, "batch_size": 16}
    overrides = {
        # every load goes through the decoded-pixel store (the default skips requests of < 1,000 images)
        "pixel_cache": {"min_images": 1},
        "datasets": {
            "imagenette": {
                "source": {"classes": CLASSES},
                "num_classes": len(CLASSES),
                # a small dataset generated at SD's working size and stored at its own (CIFAR-10 at 256 px)
                "image_size": DATASET_SIZE,
                "generator": {"model": str(model), "image_size": IMAGE_SIZE},
                "synthesis": {"steps": 4, "batch_size": 20},
                "refinement": {"n_candidates": 3},
                "detector": {"train": small_train},
                "judge": {"width": 8, "train": small_train},
                "evaluation": {
                    "seeds": [0],
                    "image_size": 16,
                    "load_size": 20,
                    "width": 8,
                    "epoch_scale": 0.001,  # 2000 epochs at IPC 10 -> 2
                    "full_epochs": 1,
                },
            }
        }
    }
    (workdir / "sd.yaml").write_text(yaml.safe_dump(overrides))
    # the README's command word for word; the test's settings come last (--configfile is greedy too)
    proc = subprocess.run([*readme_gpu_commands()[0], "--configfile", "sd.yaml"], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, f"the README's GPU command failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return workdir


def test_shared_card_command_parses_and_targets_the_same_run(sd_run):
    """The README's shared-card command (6 GPU jobs at once), as printed with the test's settings
    after it, is a valid Snakemake call for the same target: on the finished run it has nothing
    to do (run whole, it would oversubscribe a CI machine's 2 cores 6 times)."""
    proc = subprocess.run([*readme_gpu_commands()[1], "--configfile", "sd.yaml", "--dry-run"], cwd=sd_run,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_target_after_resources_is_snakemakes_parsing_trap():
    """The order some guides print (`--resources gpu=1 TARGET`) dies inside Snakemake's argument
    parser, before any workflow code runs, so the workflow cannot catch it; the README prints the
    target first. Should Snakemake start accepting it, this test fails and the README's caution can go."""
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", "--resources", "gpu=1", "results/imagenette_ipc10.csv", "-n"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode != 0 and "dictionary update sequence" in proc.stderr


def test_generator_spec_points_at_local_weights(sd_run):
    spec = json.loads((sd_run / "results" / "imagenette" / "generator" / "generator.json").read_text())
    assert spec["backend"] == "sd15"
    assert spec["class_names"] == ["tench", "church", "parachute"]
    assert spec["weights"].endswith("tiny-sd15")
    assert spec["negative_prompt"] == "cartoon, anime, painting"


def test_prototypes_and_images_from_sd_vae(sd_run):
    base = sd_run / "results" / "imagenette"
    prototypes = pd.read_parquet(base / "ipc10" / "prototypes.parquet")
    assert prototypes.groupby("label").size().tolist() == [IPC] * 3
    # latents and prototypes at the generator's working size, not the dataset's
    assert list(prototypes.latent_shape.iloc[0]) == [4, IMAGE_SIZE // 4, IMAGE_SIZE // 4]
    initial = pd.read_parquet(base / "ipc10" / "initial" / "part0" / "manifest.parquet")
    assert initial.groupby("label").size().tolist() == [IPC] * 3  # classes_per_job 0: one job for all
    candidates = pd.read_parquet(base / "ipc10" / "candidates" / "part0" / "manifest.parquet")
    for path in [initial.image_path.iloc[0], *candidates.image_path.iloc[:1]]:
        with Image.open(sd_run / path) as image:
            assert image.size == (DATASET_SIZE, DATASET_SIZE)  # stored at the dataset's size


def test_accuracy_table(sd_run):
    table = pd.read_csv(sd_run / "results" / "imagenette_ipc10.csv")
    assert set(table.method) == {"random", "d4m", "conf", "sim", "conf_sim", "full"}
    assert set(table.model) == {"resnetap10", "convnet", "resnet18"}
    assert (table[table.method != "full"].epochs == 2).all()  # Minimax 2000 x epoch_scale


def test_jobs_share_decoded_pixels(sd_run):
    """Each set of files at a size is decoded by one job and read back by the later ones (the run
    is `--cores 1`, so no two jobs miss the same entry at once)."""
    entries = sorted(p.name for p in (sd_run / "results" / "pixel_cache").glob("*.safetensors"))
    logs = "".join(p.read_text() for p in (sd_run / "logs").rglob("*.log"))
    stored = [line for line in logs.splitlines() if "pixel cache: decoded" in line]
    read = [line for line in logs.splitlines() if "pixel cache: read" in line]
    assert len(stored) == len(entries) >= 3, (entries, stored)
    # the training split at the dataset's size (detector, judge, full-data rows), the test split at
    # the evaluations' load size (every evaluation job), the generator's size (latents)
    assert {name.split("-")[0] for name in entries} >= {f"{DATASET_SIZE}px", "20px", f"{IMAGE_SIZE}px"}
    assert len(read) >= 10, f"only {len(read)} loads read the store back"
    assert "unreadable" not in logs


def test_missing_weights_fail_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    make_imagenette2(workdir / "data" / "imagenette2")  # the data checks pass: the weights are what is missing
    overrides = {"datasets": {"imagenette": {"source": {"classes": CLASSES}, "num_classes": len(CLASSES),
                                             "generator": {"model": str(tmp_path / "no-such-model")}}}}
    (workdir / "missing.yaml").write_text(yaml.safe_dump(overrides))
    proc = snakemake(workdir, "results/imagenette_ipc10.csv", "--configfile", "missing.yaml", check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert str(tmp_path / "no-such-model") in output and "download" in output
    assert "Traceback" not in output and "Exception" not in output
    assert not (workdir / "results").exists()
