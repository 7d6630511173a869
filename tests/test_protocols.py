"""Published evaluation protocols as presets (`evaluation.protocol: minimax | rded`): the preset
merge, the model variants, PCA lighting, the half-cosine schedule, the best-epoch measuring
points, the RDED batch sizes and the teacher's soft labels, through the engine, the evaluation
stage and a dry run of the workflow."""

import copy
import itertools
import re

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from detdistill import data, protocols
from detdistill.augment import build_augment, lighting
from detdistill.best_epoch import measured_epochs
from detdistill.models import build_model
from detdistill.stages import evaluation
from detdistill.train import (
    EngineOptions,
    TrainConfig,
    _make_optimizer,
    _make_scheduler,
    load_model,
    save_model,
    train_classifiers,
)

from conftest import assert_stops_with, copy_workflow, planned_jobs, snakemake

DIGITS = {"kind": "digits", "test_fraction": 0.2}


# --------------------------------------------------------------------------- presets

def _config(evaluation: dict) -> dict:
    return {"datasets": {"a": {"evaluation": copy.deepcopy(evaluation)}}}


def test_a_preset_fills_only_the_keys_the_config_leaves_out_and_names_the_overrides():
    config = _config({"protocol": "minimax", "models": ["convnet"], "width": 64, "train": {"lr": 0.1}})
    notes = protocols.apply(config)
    evaluation = config["datasets"]["a"]["evaluation"]
    assert evaluation["width"] == 64 and evaluation["train"]["lr"] == 0.1  # written: kept
    assert evaluation["train"]["lighting"] == 0.1 and evaluation["train"]["color_jitter"] == 0.4  # filled in
    assert evaluation["architecture"] == "minimax" and evaluation["models"] == ["convnet"]
    assert evaluation["epochs_by_ipc"][1] == [10, 2000] and evaluation["report_best_epoch"] is True
    # the overrides first, then the preset's own differences from its source, one line each
    assert notes[0] == ("dataset 'a': the config overrides the minimax protocol's "
                        "datasets.a.evaluation.width, datasets.a.evaluation.train.lr")
    assert notes[1:] == ["the minimax protocol (datasets a) differs from its source on purpose in:",
                         *(f"  - {line}" for line in protocols.DIFFERENCES["minimax"])]
    # the preset itself is not changed by a merge
    assert protocols.PRESETS["minimax"]["width"] == {"convnet": 128, "resnetap10": 64}
    assert protocols.PRESETS["minimax"]["train"]["lr"] == 0.01


def test_default_protocol_changes_nothing_and_an_unknown_one_names_the_key():
    written = {"models": ["convnet"], "width": 32, "train": {"lr": 0.1}}
    config = _config(written)
    assert protocols.apply(config) == [] and config["datasets"]["a"]["evaluation"] == written
    with pytest.raises(protocols.ProtocolError, match=r"datasets\.a\.evaluation\.protocol.*minimax, rded"):
        protocols.apply(_config({"protocol": "idc"}))


def test_rded_preset_is_soft_labels_from_the_detector():
    config = _config({"protocol": "rded"})
    protocols.apply(config)
    evaluation = config["datasets"]["a"]["evaluation"]
    assert evaluation["teacher"] == "detector" and evaluation["teacher_temperature"] == 20
    assert evaluation["train"]["optimizer"] == "adamw" and evaluation["train"]["schedule"] == "half_cosine"
    assert evaluation["train"]["crop_scale"] is False and evaluation["normalization"] == "imagenet"


# --------------------------------------------------------------------------- models

def _modules(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


def test_minimax_architecture_resnetap10_stem_and_instance_norm_resnet18():
    first_conv = _modules(build_model("resnetap10", 10, 224, 8, architecture="minimax"), nn.Conv2d)[0]
    assert first_conv.kernel_size == (7, 7) and first_conv.stride == (1, 1)
    assert _modules(build_model("resnetap10", 10, 224, 8), nn.Conv2d)[0].kernel_size == (3, 3)
    assert _modules(build_model("resnetap10", 10, 32, 8, architecture="minimax"), nn.Conv2d)[0].kernel_size == (3, 3)
    minimax18 = build_model("resnet18", 10, 224, architecture="minimax")
    assert not _modules(minimax18, nn.BatchNorm2d) and len(_modules(minimax18, nn.GroupNorm)) == 20
    assert not _modules(build_model("resnet18", 10, 224), nn.GroupNorm)
    assert minimax18(torch.rand(2, 3, 224, 224)).shape == (2, 10)


def test_rded_convnet_has_batch_norm_and_imagenet_normalisation_is_built_in():
    model = build_model("convnet", 10, 32, 16, architecture="rded", normalization="imagenet")
    assert len(_modules(model, nn.BatchNorm2d)) == 3 and not _modules(model, nn.GroupNorm)
    assert model.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    with pytest.raises(ValueError, match="architecture"):
        build_model("convnet", 10, 32, architecture="idc")


def test_a_saved_variant_loads_as_the_same_variant_and_a_default_one_keeps_its_metadata(tmp_path):
    model = build_model("resnet18", 3, 16, architecture="minimax", normalization="imagenet")
    save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors", "cpu")
    assert _modules(loaded, nn.GroupNorm) and torch.equal(loaded.std, model.std)
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(loaded(x), model.eval()(x))
    assert build_model("convnet", 3, 16).build_args == {"name": "convnet", "num_classes": 3, "image_size": 16,
                                                        "width": 64}


# --------------------------------------------------------------------------- training pieces

def test_lighting_shifts_each_image_by_one_rgb_offset_drawn_per_image():
    batch = torch.rand(4, 3, 8, 8)
    torch.manual_seed(0)
    lit = lighting(batch, 0.1)
    offset = lit - batch
    assert torch.allclose(offset, offset[:, :, :1, :1].expand_as(offset), atol=1e-6)  # constant over pixels
    assert not torch.allclose(offset[0], offset[1])  # its own draw per image
    torch.manual_seed(0)
    assert torch.equal(lighting(batch, 0.1), lit)  # seeded
    augment = build_augment(8, crop_scale=None, crop_size=None, color_jitter=0, flip=False, lighting_std=0.1)
    assert augment is not None
    assert build_augment(8, crop_scale=None, crop_size=None, color_jitter=0, flip=False) is None


def test_half_cosine_decays_to_half_the_learning_rate():
    cfg = TrainConfig(epochs=300, lr=0.001, optimizer="adamw", schedule="half_cosine")
    opt = _make_optimizer([nn.Parameter(torch.zeros(1))], cfg)
    sched = _make_scheduler(opt, cfg)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.001) and lrs[-1] == pytest.approx(0.0005, rel=0.01)
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_best_epoch_measuring_points_of_both_protocols():
    minimax = measured_epochs({"best_epoch_evaluations": 100}, 2000)
    assert [e for e in range(1, 2001) if minimax(e)] == list(range(20, 2001, 20))
    rded = measured_epochs({"best_epoch_every": 10, "best_epoch_after": 0.8}, 300)
    assert [e for e in range(1, 301) if rded(e)] == [250, 260, 270, 280, 290, 300]  # RDED's six
    assert [e for e in range(1, 5) if measured_epochs({}, 4)(e)] == [1, 2, 3, 4]


def test_batch_size_by_ipc():
    cfg = {"batch_size_by_ipc": [[1, 10], [10, 50], [50, 100]], "train": {"batch_size": 64}}
    assert [evaluation.batch_size_for(cfg, ipc) for ipc in (1, 10, 20, 50, 100, None)] == [10, 50, 100, 100, 100, 64]
    assert evaluation.batch_size_for({"train": {"batch_size": 64}}, 10) == 64


# --------------------------------------------------------------------------- the teacher

def _digits(n_classes=3):
    manifest = data.build_manifest({**DIGITS, "classes": [str(c) for c in range(n_classes)]}, seed=0)
    train = data.train_split(manifest)
    return manifest, data.load_images(train, DIGITS, 8), data.label_tensor(train)


def test_with_a_teacher_the_labels_are_never_read_and_the_student_learns_the_teacher():
    _, images, labels = _digits()
    torch.manual_seed(0)
    teacher = build_model("convnet", 3, 8, 8)
    train_classifiers([teacher], [0], images, labels, TrainConfig(epochs=15, batch_size=32, lr=0.05, flip=False,
                                                                 crop_scale=None), "cpu")
    cfg = TrainConfig(epochs=15, batch_size=32, lr=0.05, flip=False, crop_scale=None)

    def student(train_labels):
        torch.manual_seed(1)
        model = build_model("convnet", 3, 8, 8)
        train_classifiers([model], [0], images, train_labels, cfg, "cpu", EngineOptions(teacher=teacher, temperature=4.0))
        return model.eval()

    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    taught, taught_shuffled = student(labels), student(shuffled)
    for a, b in zip(taught.state_dict().values(), taught_shuffled.state_dict().values()):
        assert torch.equal(a, b)  # soft labels only: the given labels play no part
    with torch.no_grad():
        x = images.float() / 255
        agreement = (taught(x).argmax(1) == teacher.eval()(x).argmax(1)).float().mean().item()
    assert agreement > 0.9
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())


def test_evaluate_with_a_teacher_file_and_a_wrong_teacher_gets_one_line(tmp_path):
    manifest = _digits()[0]
    manifest.to_parquet(tmp_path / "manifest.parquet")
    train = data.train_split(manifest)
    subset = train.groupby("label").head(4).assign(kind="real", method="random")
    subset.to_parquet(tmp_path / "set.parquet")
    teacher = build_model("convnet", 3, 8, 4)
    save_model(teacher, tmp_path / "teacher.safetensors")
    eval_cfg = {"seeds": [0, 1], "image_size": 8, "width": 4, "teacher": str(tmp_path / "teacher.safetensors"),
                "teacher_temperature": 20.0, "batch_size_by_ipc": [[10, 5]], "architecture": "rded",
                "normalization": "imagenet",
                "train": {"epochs": 2, "batch_size": 64, "lr": 0.001, "optimizer": "adamw", "flip": True,
                          "cutmix_alpha": 1.0, "crop_scale": False, "schedule": "half_cosine"}}
    out = tmp_path / "scores.parquet"
    evaluation.evaluate(set_path=tmp_path / "set.parquet", manifest_path=tmp_path / "manifest.parquet",
                        source_cfg=DIGITS, model_name="convnet", eval_cfg=eval_cfg, ipc=4, out_path=out)
    scores = pd.read_parquet(out)
    assert scores.seed.tolist() == [0, 1] and scores.test_accuracy.between(0, 1).all()
    save_model(build_model("convnet", 5, 8, 4), tmp_path / "five.safetensors")
    with pytest.raises(data.DataError, match="predicts 5 classes, the dataset has 3"):
        evaluation.evaluate(set_path=tmp_path / "set.parquet", manifest_path=tmp_path / "manifest.parquet",
                            source_cfg=DIGITS, model_name="convnet",
                            eval_cfg={**eval_cfg, "teacher": str(tmp_path / "five.safetensors")}, ipc=4, out_path=out)


# --------------------------------------------------------------------------- the workflow

def _protocol_config(workdir, protocol, **evaluation_keys):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["evaluation"].update({"protocol": protocol, **evaluation_keys})
    (workdir / f"{protocol}.yaml").write_text(yaml.safe_dump(config))
    return f"{protocol}.yaml"


def test_rded_protocol_evaluations_read_the_detector(tmp_path):
    workdir = copy_workflow(tmp_path)
    configfile = _protocol_config(workdir, "rded")
    target = "results/tiny/ipc2/eval/d4m/convnet.parquet"
    out = snakemake(workdir, target, "--configfile", configfile, "--dry-run").stdout
    # the preset's differences from RDED's code, printed at the start
    assert re.search(r"^the rded protocol \(datasets [^)]*\btiny\b[^)]*\) differs from its source", out, re.M)
    assert "\n  - weight decay applies to every parameter" in out
    evaluate_job = out[out.index("rule evaluate:"):]
    evaluate_job = evaluate_job[:evaluate_job.index("wildcards:")]
    assert "results/tiny/classifiers/detector/model.safetensors" in evaluate_job  # an input of the evaluation
    plain = snakemake(workdir, target, "--configfile", "tiny.yaml", "--dry-run").stdout
    plain_job = plain[plain.index("rule evaluate:"):]
    assert "detector/model.safetensors" not in plain_job[:plain_job.index("wildcards:")]


@pytest.mark.parametrize(("protocol", "keys", "expected"), [
    ("idc", {}, "datasets.tiny.evaluation.protocol"),
    ("rded", {"teacher": "nowhere/teacher.safetensors"}, "which is no file"),
])
def test_an_unknown_protocol_or_a_missing_teacher_file_stops_in_one_line(tmp_path, protocol, keys, expected):
    workdir = copy_workflow(tmp_path)
    configfile = _protocol_config(workdir, protocol, **keys)
    proc = snakemake(workdir, "results/tiny/ipc2/eval/d4m/convnet.parquet", "--configfile", configfile, "-n",
                     check=False)
    assert_stops_with(proc, expected)


def test_changing_one_models_width_re_runs_only_that_model(tmp_path):
    workdir = copy_workflow(tmp_path)
    targets = {name: f"results/tiny/eval_full/{name}.parquet" for name in ("convnet", "resnetap10")}
    snakemake(workdir, *targets.values(), "--configfile", "tiny.yaml")  # tiny.yaml: width 8

    def with_width(configfile, width):
        config = yaml.safe_load((workdir / "tiny.yaml").read_text())
        config["datasets"]["tiny"]["evaluation"]["width"] = width
        (workdir / configfile).write_text(yaml.safe_dump(config))
        return configfile

    # the mapping form of the same widths: every job's params as before
    same = with_width("same.yaml", {"convnet": 8, "resnetap10": 8})
    assert [planned_jobs(workdir, same, target) for target in targets.values()] == [{}, {}]
    # a wider ResNetAP-10 re-runs its trainings and no ConvNet's
    wider = with_width("wider.yaml", {"convnet": 8, "resnetap10": 16})
    assert planned_jobs(workdir, wider, targets["convnet"]) == {}
    assert planned_jobs(workdir, wider, targets["resnetap10"]) == {"evaluate_full": 1}


def test_a_teacher_or_ipc_batch_sizes_re_run_no_full_data_evaluation(tmp_path):
    workdir = copy_workflow(tmp_path)
    target = "results/tiny/eval_full/convnet.parquet"
    snakemake(workdir, target, "--configfile", "tiny.yaml")
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["datasets"]["tiny"]["evaluation"].update(
        {"teacher": "detector", "teacher_temperature": 20.0, "batch_size_by_ipc": [[10, 5]]})
    (workdir / "teacher.yaml").write_text(yaml.safe_dump(config))
    # the full-data runs train on hard labels at train.batch_size: nothing of theirs changed
    assert planned_jobs(workdir, "teacher.yaml", target) == {}
    # while the IPC evaluations are planned anew, with the detector as their input
    assert planned_jobs(workdir, "teacher.yaml", "results/tiny/ipc2/eval/d4m/convnet.parquet")["evaluate"] == 1
