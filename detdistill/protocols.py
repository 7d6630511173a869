"""Evaluation protocols as presets (issue 10 point 1): `datasets.<name>.evaluation.protocol`.

A preset fills in the `evaluation` keys (and `evaluation.train` keys) the config does not write;
every key the config writes wins, and the keys it overrides are named on the console when the
workflow starts, so nobody mistakes a modified protocol for the published one. `default` changes
nothing. The sources are the public reference implementations, read for the facts below (no code
taken); `../shared/REFERENCE.md` in the development notes has the same facts.

`minimax`: vimar-gu/MinimaxDiffusion's `train.py` (HEAD 969fc6f), the paper's ImageNette /
ImageWoof protocol. ConvNet width 128 (`--width 1.0` x 128) with instance norm; ResNetAP-10 with a
7x7 stride-1 stem then 4x average pooling; ResNet-18 (its own class, torchvision's layout) with
instance norm (`--norm_type instance`, the default); images resized to 224 (short side) and
centre-cropped for training and test alike (`load_size` = `image_size`: no 256 -> 224 crop);
RandomResizedCrop(224, scale 0.5-1), flip, ColorJitter 0.4, PCA lighting 0.1, ImageNet mean/std;
CutMix beta 1 on every batch; SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 64; epochs by
IPC 1 -> 3000, <= 10 -> 2000, <= 50 -> 1500, <= 200 -> 1000, <= 500 -> 500 (300 above, here the
last entry applies); MultiStepLR x0.2 at 2/3 and 5/6; the test accuracy measured every E // 100
epochs and the *best* reported. Here the final-epoch accuracy stays the headline and the best
is reported in its own, labelled columns (`report_best_epoch`). Its IPC subsets of more generated
images take the first files in string order; ours are the whole set of the IPC asked for.

`rded`: LINs-lab/RDED's `validation/main.py` and `argument.py` (HEAD 3f6453d), the paper's
CIFAR-10 protocol. The student learns the teacher's soft labels, computed online on every
augmented, CutMixed batch: KL(softmax(teacher / 20) || softmax(student / 20)), batch mean, no T^2;
AdamW lr 0.001, weight decay 0.01, a half cosine (lr x 0.5 (1 + cos(pi e / 2E)), down to half)
stepped per epoch; 300 epochs; batch 10 / 50 / 100 at IPC 1 / 10 / 50 (10 classes; RDED doubles
them for 100 classes or more: set `batch_size_by_ipc` then); flip and CutMix beta 1 on every batch
(its RandomResizedCrop has scale (1, 1) at `--factor 1`, a no-op); ImageNet mean/std; ConvNet
(`conv3`, width 128) and ResNet-18 "modified" with batch norm; test accuracy measured every 10
epochs in the last fifth and the best reported (here in its own columns, final epoch the headline).
Differences, kept on purpose: the teacher is this dataset's detector (the paper's detector *is*
RDED's observer on CIFAR-10; RDED's observers are pre-trained with torchvision's reference recipe
and share the student's architecture: give such a file as `teacher` to match); weight decay
applies to every parameter (RDED exempts biases and norm parameters); the full-data runs train on
hard labels (a teacher would make them distillation, not the upper bound).
"""

from __future__ import annotations

import copy

PROTOCOLS = ("default", "minimax", "rded")

PRESETS: dict[str, dict] = {
    "default": {},
    "minimax": {
        "architecture": "minimax",
        "normalization": "imagenet",
        "width": 128,
        "load_size": None,
        "epochs_by_ipc": [[1, 3000], [10, 2000], [50, 1500], [200, 1000], [500, 500]],
        "report_best_epoch": True,
        "best_epoch_evaluations": 100,
        "train": {
            "batch_size": 64,
            "optimizer": "sgd",
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 0.0005,
            "schedule": "multistep",
            "cutmix_alpha": 1.0,
            "cutmix_prob": 1.0,
            "crop_scale": [0.5, 1.0],
            "color_jitter": 0.4,
            "lighting": 0.1,
            "flip": True,
        },
    },
    "rded": {
        "architecture": "rded",
        "normalization": "imagenet",
        "width": 128,
        "teacher": "detector",
        "teacher_temperature": 20.0,
        "epochs_by_ipc": [[50, 300]],
        "batch_size_by_ipc": [[1, 10], [10, 50], [50, 100]],
        "report_best_epoch": True,
        "best_epoch_every": 10,
        "best_epoch_after": 0.8,
        "train": {
            "optimizer": "adamw",
            "lr": 0.001,
            "weight_decay": 0.01,
            "schedule": "half_cosine",
            "cutmix_alpha": 1.0,
            "cutmix_prob": 1.0,
            "crop_scale": False,
            "color_jitter": 0.0,
            "lighting": 0.0,
            "flip": True,
        },
    },
}


class ProtocolError(ValueError):
    """An unknown protocol (the message names the key and the choices)."""


def _merge(preset: dict, written: dict, where: str, overridden: list[str]) -> dict:
    """`preset` under `written`, nested mappings merged; the written keys that differ from the
    preset's value are appended to `overridden` as dotted paths."""
    merged = copy.deepcopy(preset)
    for key, value in written.items():
        if isinstance(value, dict) and isinstance(preset.get(key), dict):
            merged[key] = _merge(preset[key], value, f"{where}.{key}", overridden)
            continue
        if key in preset and preset[key] != value:
            overridden.append(f"{where}.{key}")
        merged[key] = value
    return merged


def apply(config: dict) -> list[str]:
    """Fill every dataset's `evaluation` from its protocol preset (in place, before the schema's
    defaults are filled in). Returns one line per dataset whose config overrides a preset value."""
    notes = []
    for name, entry in config.get("datasets", {}).items():
        evaluation = entry.get("evaluation")
        if not isinstance(evaluation, dict):
            continue  # the schema check names the missing section
        protocol = evaluation.get("protocol", "default")
        if protocol not in PRESETS:
            raise ProtocolError(
                f"`datasets.{name}.evaluation.protocol` is {protocol!r}; choose one of {', '.join(PROTOCOLS)} "
                "(detdistill/protocols.py documents each)"
            )
        overridden: list[str] = []
        entry["evaluation"] = _merge(PRESETS[protocol], evaluation, f"datasets.{name}.evaluation", overridden)
        if overridden:
            notes.append(f"dataset {name!r}: the config overrides the {protocol} protocol's {', '.join(overridden)}")
    return notes
