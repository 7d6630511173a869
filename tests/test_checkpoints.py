"""Classifiers loaded from a file (detdistill.checkpoints, `detector.weights`): RDED's observer
format read as torchvision's model computes it, every bad file one line before any job runs, and
a run with a loaded detector measuring it like a trained one without training it."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch
import torch.nn as nn
import yaml
from safetensors.torch import save_file

from detdistill import checkpoints, schema
from detdistill.models import ARCHITECTURES, NORMALIZATIONS, build_model
from detdistill.train import save_model

from conftest import copy_workflow, planned_jobs, snakemake

torchvision = pytest.importorskip("torchvision")

#: RDED's CIFAR-10 observer at 32 px: LINs-lab/RDED synthesize/utils.py, load_model's
#: "resnet18_modified" (conv1 = Conv2d(3, 64, 3, 1, 1, bias=False), maxpool = Identity)
OBSERVER = {"name": "resnet18", "num_classes": 10, "image_size": 32, "width": 64, "architecture": "rded",
            "normalization": "imagenet"}


def rded_resnet18(num_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.train()
    with torch.no_grad():  # batch-norm statistics away from their initial 0 / 1, so a mix-up shows
        net(torch.rand(16, 3, 32, 32))
    return net.eval()


def reference_checkpoint(state_dict: dict) -> dict:
    """The layout torchvision's reference classification script saves (RDED trains its observers with it)."""
    return {"model": state_dict, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {"last_epoch": 3},
            "epoch": 3, "args": argparse.Namespace(lr=0.1, model="resnet18", epochs=4)}


def imagenet_normalized(images: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS["imagenet"])
    return (images - mean) / std


@pytest.mark.parametrize("layout", ["reference", "state_dict", "bare", "data_parallel"])
def test_rded_observer_gives_torchvisions_logits(tmp_path, layout):
    net = rded_resnet18(10)
    state = net.state_dict()
    saved = {"reference": reference_checkpoint(state), "state_dict": {"state_dict": state, "epoch": 3}, "bare": state,
             "data_parallel": reference_checkpoint({f"module.{k}": v for k, v in state.items()})}[layout]
    path = tmp_path / "cifar10_resnet18_modified.pth"
    torch.save(saved, path)
    checkpoints.check_file(path, OBSERVER)
    model = checkpoints.load_classifier(path, OBSERVER)
    images = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(images), net(imagenet_normalized(images)), atol=1e-5)


def test_safetensors_files_load(tmp_path):
    net = rded_resnet18(10)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, plain)
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(checkpoints.load_classifier(plain, OBSERVER)(images), net(imagenet_normalized(images)),
                              atol=1e-5)
    # detdistill's own file, with its metadata and normalisation buffers
    ours = build_model(**OBSERVER).eval()
    own = tmp_path / "own.safetensors"
    save_model(ours, own)
    with torch.no_grad():
        assert torch.equal(checkpoints.load_classifier(own, OBSERVER)(images), ours(images))
    # its buffers say half (mean = std = 0.5): loading it as ImageNet-normalised would shift every input
    half = build_model("convnet", 3, 32, 8).eval()
    save_model(half, own)
    with pytest.raises(checkpoints.CheckpointError, match="normalises inputs with mean"):
        checkpoints.load_classifier(own, {"name": "convnet", "num_classes": 3, "image_size": 32, "width": 8,
                                          "normalization": "imagenet"})


def test_mismatches_name_what_differs(tmp_path):
    path = tmp_path / "imagenet.pth"
    torch.save(reference_checkpoint(rded_resnet18(1000).state_dict()), path)
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.check_file(path, OBSERVER)
    assert str(path) in str(error.value) and "expects 10 classes, file has 1000: fc.weight (1000, 512)" in str(error.value)
    # a 7x7 ImageNet stem where the 3x3 low-resolution stem is expected: same keys, other shape
    stem = torchvision.models.resnet18(num_classes=10).state_dict()
    torch.save(stem, path)
    with pytest.raises(checkpoints.CheckpointError, match=r"backbone.conv1.weight: expects shape \(64, 3, 3, 3\), "
                                                          r"file has \(64, 3, 7, 7\)"):
        checkpoints.check_file(path, OBSERVER)


def test_unsafe_pickle_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.makedirs, (str(marker),)

    path = tmp_path / "payload.pth"
    torch.save({"model": rded_resnet18(10).state_dict(), "extra": Payload()}, path)
    with pytest.raises(checkpoints.CheckpointError, match=r"refused to unpickle `\w+\.makedirs`"):
        checkpoints.read_state_dict(path)
    assert not marker.exists()


def test_architecture_lists_are_the_packages():
    """The schema repeats the choices for the classifier and the evaluation: both must be the package's."""
    for section in ("classifier", "dataset.evaluation"):
        properties = schema.section(section)["properties"]
        assert properties["architecture"]["enum"] == list(ARCHITECTURES), section
        assert properties["normalization"]["enum"] == list(NORMALIZATIONS), section
        assert properties["architecture"]["default"] == "detdistill" and properties["normalization"]["default"] == "half"


# --------------------------------------------------------------------------- the workflow
TINY_CLASSES = 3  # tests/config/tiny.yaml's source.classes


def with_detector(workdir, weights, name="loaded.yaml", **extra) -> str:
    """tiny.yaml with its detector loaded from `weights` as RDED's ResNet-18 observer."""
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    entry = config["datasets"]["tiny"]
    entry["detector"] = {"model": "resnet18", "architecture": "rded", "normalization": "imagenet", "weights": str(weights)}
    for key, value in extra.items():
        entry[key] = {**entry.get(key, {}), **value}
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


def bad_files(tmp_path) -> dict:
    """Files that must each stop the run: {name: (path, what the line must say)}."""
    files = {}
    path = tmp_path / "classes1000.pth"
    torch.save(reference_checkpoint(rded_resnet18(1000).state_dict()), path)
    files["1000 classes"] = (path, f"expects {TINY_CLASSES} classes, file has 1000")
    path = tmp_path / "resnetap10.pth"
    torch.save(reference_checkpoint(build_model("resnetap10", TINY_CLASSES, 32, 8).state_dict()), path)
    files["resnetap10"] = (path, "keys differ from the architecture: missing")
    good = tmp_path / "good.pth"
    torch.save(reference_checkpoint(rded_resnet18(TINY_CLASSES).state_dict()), good)
    path = tmp_path / "truncated.pth"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["truncated"] = (path, "cannot be read as a torch file")
    path = tmp_path / "unsafe.pth"
    torch.save({"model": rded_resnet18(TINY_CLASSES).state_dict(), "hook": print}, path)
    files["unsafe"] = (path, "refused to unpickle `print`")
    files["missing"] = (tmp_path / "cifar10_resnet18_modified.pth", "LINs-lab/RDED")
    return files


def test_bad_weights_stop_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    for label, (path, expected) in bad_files(tmp_path).items():
        proc = snakemake(workdir, "results/tiny_ipc2.csv", "--configfile", with_detector(workdir, path), check=False)
        output = proc.stdout + proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode != 0, label
        assert len(errors) == 1 and "`datasets.tiny.detector.weights`" in errors[0], (label, output[-2000:])
        assert str(path) in errors[0] and expected in errors[0], (label, errors)
        assert "Traceback" not in output, label
        assert not (workdir / "results").exists(), label  # the DAG stopped: no job ran
    assert "null to train the classifier in the run" in errors[0]


def test_a_loaded_detector_cannot_follow_the_trust_split(tmp_path):
    """The trust stage retrains the detector on its trusted images: a file cannot, so both are refused."""
    workdir = copy_workflow(tmp_path / "wf")
    weights = tmp_path / "observer.pth"
    torch.save(reference_checkpoint(rded_resnet18(TINY_CLASSES).state_dict()), weights)
    configfile = with_detector(workdir, weights, trust={"enabled": True})
    proc = snakemake(workdir, "results/tiny_ipc2.csv", "-n", "--configfile", configfile, check=False)
    assert proc.returncode != 0 and "`trust.enabled`" in proc.stderr and "Traceback" not in proc.stderr


def test_weights_of_datasets_not_built_are_not_read(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    other = json.loads(json.dumps(config["datasets"]["tiny"]))
    other["detector"] = {"model": "resnet18", "weights": str(tmp_path / "absent.pth")}
    config["datasets"]["other"] = other
    (workdir / "two.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(workdir, "two.yaml")["train_classifier"] == 2  # tiny's detector and judge


def test_teacher_entry_is_loaded_by_its_own_rule(tmp_path):
    """An `evaluation.teacher` entry in a foreign format: one more train_classifier job (role
    teacher), its file checked before any job like the detector's."""
    workdir = copy_workflow(tmp_path / "wf")
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    weights = tmp_path / "teacher.pth"
    torch.save(reference_checkpoint(rded_resnet18(TINY_CLASSES).state_dict()), weights)
    teacher = {"model": "resnet18", "architecture": "rded", "normalization": "imagenet", "weights": str(weights)}
    config["datasets"]["tiny"]["evaluation"].update(teacher=teacher, teacher_temperature=20.0)
    (workdir / "teacher.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(workdir, "teacher.yaml")["train_classifier"] == 3  # detector, judge, teacher
    # the teacher alone needs the data and its own job, no training of the detector
    assert planned_jobs(workdir, "teacher.yaml", "results/tiny/classifiers/teacher/metrics.json") == {
        "prepare_data": 1, "train_classifier": 1}
    torch.save(reference_checkpoint(rded_resnet18(1000).state_dict()), weights)
    proc = snakemake(workdir, "results/tiny_ipc2.csv", "-n", "--configfile", "teacher.yaml", check=False)
    assert proc.returncode != 0
    assert "error: `datasets.tiny.evaluation.teacher.weights`" in proc.stderr and "file has 1000" in proc.stderr


def test_loaded_detector_run(tmp_path):
    """The loaded detector's rule measures it, fits a temperature on it, and feeds score_initial;
    the same file touched re-runs nothing, another file re-runs the detector and what reads it."""
    workdir = copy_workflow(tmp_path / "wf")
    weights = tmp_path / "cifar10_resnet18_modified.pth"
    torch.save(reference_checkpoint(rded_resnet18(TINY_CLASSES).state_dict()), weights)
    configfile = with_detector(workdir, weights, source={"validation_fraction": 0.1},
                               refinement={"beta_mode": "temperature"})
    target = "results/tiny/ipc2/initial_scores.parquet"
    snakemake(workdir, target, "results/tiny/classifiers/judge/metrics.json", "--configfile", configfile)
    detector = workdir / "results/tiny/classifiers/detector"
    metrics = json.loads((detector / "metrics.json").read_text())
    assert metrics["trained_in_run"] is False and metrics["weights"] == str(weights)
    assert metrics["weights_sha256"] == checkpoints.file_sha256(weights)
    assert 0 <= metrics["test_accuracy"] <= 1 and set(metrics["test_share_below_beta"]) == {"0.5", "0.7", "0.9"}
    assert metrics["temperature_scaling"]["temperature"] > 0
    from detdistill.train import read_model_meta

    meta = read_model_meta(detector / "model.safetensors")
    assert meta["meta"]["weights_sha256"] == metrics["weights_sha256"]
    assert meta["build_args"]["architecture"] == "rded" and meta["build_args"]["normalization"] == "imagenet"
    log = (workdir / "logs/train_classifier/tiny_detector.log").read_text()
    assert "not trained" in log and "epoch" not in log.lower()  # no training epochs were logged
    judge = json.loads((workdir / "results/tiny/classifiers/judge/metrics.json").read_text())
    assert judge["trained_in_run"] is True and "weights_sha256" not in judge

    os.utime(weights)  # touched (or copied in place): the same bytes
    assert planned_jobs(workdir, configfile, target) == {}
    torch.save(reference_checkpoint(rded_resnet18(TINY_CLASSES, seed=1).state_dict()), weights)
    planned = planned_jobs(workdir, configfile, target)
    assert planned.get("train_classifier") == 1 and planned.get("score_initial") == 1, planned
