"""Evaluation protocols as presets: `datasets.<name>.evaluation.protocol`.

A preset fills in the `evaluation` keys (and `evaluation.train` keys) the config does not write;
every key the config writes wins, and the keys it overrides are named on the console when the
workflow starts, so nobody mistakes a modified protocol for the published one. `default` changes
nothing. The sources are the public reference implementations, read for the facts below (no code
taken); `../shared/REFERENCE.md` in the development notes has the same facts.

`minimax`: vimar-gu/MinimaxDiffusion's `train.py` (HEAD 969fc6f), the paper's ImageNette /
ImageWoof protocol. Widths per model, as `train.py:define_model` builds them at its default
`--width 1.0`: ConvNet-6 128 wide (`int(128 * width)`), ResNetAP-10 64 wide (`width=width`, and
`train_models/resnet_ap.py` starts at `int(64 * width)` channels: 64/128/256/512); ConvNet with
instance norm; ResNetAP-10 with a 7x7 stride-1 stem then 4x average pooling at 224 px, He's fan-out
init; ResNet-18 (its own class, torchvision's layout, 64 wide) with instance norm (`--norm_type
instance`, the default); full-data runs 300 epochs (its `--epochs` default); images resized to 224
(short side) and centre-cropped for training and test alike (`load_size` = `image_size`: no
256 -> 224 crop); RandomResizedCrop(224, scale 0.5-1), flip, ColorJitter 0.4, PCA lighting 0.1, ImageNet mean/std;
CutMix beta 1 on every batch; SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 64; epochs by
IPC 1 -> 3000, <= 10 -> 2000, <= 50 -> 1500, <= 200 -> 1000, <= 500 -> 500 (300 above, here the
last entry applies); MultiStepLR x0.2 at 2/3 and 5/6; the test accuracy measured every E // 100
epochs and the *best* reported: the headline here too (`headline: best_epoch`), with the
final-epoch accuracy in its own columns beside it (`report_best_epoch`).

`rded`: LINs-lab/RDED's `validation/main.py` and `argument.py` (HEAD 3f6453d), the paper's
CIFAR-10 protocol. The student learns the teacher's soft labels, computed online on every
augmented, CutMixed batch: KL(softmax(teacher / 20) || softmax(student / 20)), batch mean, no T^2;
AdamW lr 0.001, weight decay 0.01, a half cosine (lr x 0.5 (1 + cos(pi e / 2E)), down to half)
stepped per epoch; 300 epochs; batch 10 / 50 / 100 at IPC 1 / 10 / 50 (10 classes; RDED doubles
them for 100 classes or more: set `batch_size_by_ipc` then); flip and CutMix beta 1 on every batch
(its RandomResizedCrop has scale (1, 1) at `--factor 1`, a no-op); ImageNet mean/std; ConvNet
(`conv3`, width 128) and ResNet-18 "modified" with batch norm (RDED has no ResNetAP-10: the
preset's is this project's, 64 wide, the layout Minimax's ResNetAP-10 has at <= 64 px); test
accuracy measured every 10 epochs in the last fifth and the best reported (the headline here
too, final epoch beside it). The teacher is this dataset's detector: the paper's detector *is* RDED's observer on CIFAR-10
(RDED's observers are pre-trained with torchvision's reference recipe and share the student's
architecture: give such a file as `teacher` to match).

Where a preset differs from its source on purpose, `DIFFERENCES` says so in one line each; the
workflow prints them at its start for every dataset that uses the preset.
"""

from __future__ import annotations

import copy

PROTOCOLS = ("default", "minimax", "rded")

PRESETS: dict[str, dict] = {
    "default": {},
    "minimax": {
        "architecture": "minimax",
        "normalization": "imagenet",
        # train.py:define_model: ConvNet int(128 * width), ResNetAP int(64 * width) at --width 1.0
        "width": {"convnet": 128, "resnetap10": 64},
        "load_size": None,
        "full_epochs": 300,
        "epochs_by_ipc": [[1, 3000], [10, 2000], [50, 1500], [200, 1000], [500, 500]],
        "report_best_epoch": True,
        "headline": "best_epoch",
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
        # synthesize/utils.py:load_model: ConvNet net_width=128; resnetap10 (not RDED's) at 64
        "width": {"convnet": 128, "resnetap10": 64},
        "teacher": "detector",
        "teacher_temperature": 20.0,
        "epochs_by_ipc": [[50, 300]],
        "batch_size_by_ipc": [[1, 10], [10, 50], [50, 100]],
        "report_best_epoch": True,
        "headline": "best_epoch",
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


#: what a preset does otherwise than its source, on purpose: one line each, printed at the start
DIFFERENCES: dict[str, list[str]] = {
    "default": [],
    "minimax": [
        "test split: the dataset's own test folder (Minimax tests on the 50 ImageNet validation images of each class)",
        "IPC sets: the whole set of the IPC asked for (Minimax takes the first files of a larger pool in string order)",
        "IPC above 500: 500 epochs, the table's last entry (Minimax: 300)",
        "full-data runs: test accuracy measured every 3rd of the 300 epochs, E // 100 (Minimax: every epoch)",
        "colour jitter clamps to [0, 1] (kornia's; Minimax's own jitter does not)",
        "CutMix pairs each image with its neighbour in the shuffled batch (torchvision's CutMix; "
        "Minimax: a random permutation)",
    ],
    "rded": [
        "teacher: this dataset's detector for every student (RDED: an observer of the student's architecture; "
        "give one as `teacher`)",
        "weight decay applies to every parameter (RDED exempts biases and norm parameters)",
        "full-data runs train on hard labels (a teacher would make them distillation, not the upper bound)",
        "batch-norm statistics update once a step (RDED's extra no-grad student forward updates them twice)",
        "resnetap10: this project's (RDED has none), 3x3 stride-1 stem, instance norm, 64 wide",
        "CutMix pairs each image with its neighbour in the shuffled batch (torchvision's CutMix; "
        "RDED: a random permutation)",
    ],
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
    defaults are filled in). Returns the lines to print: per dataset, the preset values its config
    overrides (one line); then per protocol in use, a line naming the datasets that use it and its
    DIFFERENCES from its source, one line each."""
    overrides = apply_per_dataset(config)
    return [line for lines in overrides.values() for line in lines] + [
        line for lines in differences_notes(config).values() for line in lines]


def apply_per_dataset(config: dict) -> dict[str, list[str]]:
    """`apply`'s filling in; returns per dataset its override line (or none), so a run prints the
    lines of the datasets it builds only."""
    notes: dict[str, list[str]] = {}
    for name, entry in config.get("datasets", {}).items():
        notes[name] = []
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
            notes[name].append(f"dataset {name!r}: the config overrides the {protocol} protocol's {', '.join(overridden)}")
    return notes


def protocol_of(entry: dict) -> str:
    evaluation = entry.get("evaluation")
    return evaluation.get("protocol", "default") if isinstance(evaluation, dict) else "default"


def differences_notes(config: dict) -> dict[str, list[str]]:
    """Per protocol in use with DIFFERENCES: a line naming the datasets that use it, then its
    differences from its source, one line each."""
    users: dict[str, list[str]] = {}
    for name, entry in config.get("datasets", {}).items():
        users.setdefault(protocol_of(entry), []).append(name)
    return {protocol: [f"the {protocol} protocol (datasets {', '.join(names)}) differs from its source on purpose in:",
                       *(f"  - {line}" for line in DIFFERENCES[protocol])]
            for protocol, names in users.items() if DIFFERENCES.get(protocol)}
