"""What every evaluation model shares: the `Classifier` wrapper, the settings that pick a variant,
and the `EvaluationModel` component a model file registers in `MODELS`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn

from .. import schema
from ..registry import Registry

#: `detdistill`: this project's models (ResNetAP-10 with a 3x3 stem, then 4x pooling above 64 px;
#: ResNet-18 with batch norm). `minimax`: as vimar-gu/MinimaxDiffusion's train_models/ builds them
#: (its defaults, `--norm_type instance`): ResNetAP-10's stem by image size (7x7 stride-1 conv then
#: 4x average pooling above 128 px, 3x3 then 2x at 65-128, 3x3 alone at <= 64) and its convs drawn
#: from N(0, 2 / (k^2 out_channels)); ResNet-18 with instance norm (at 65-128 px its 3x3 stride-1 stem
#: before the max-pool). `rded`: as LINs-lab/RDED's synthesize/models.py and utils.py: ConvNet with
#: batch norm (its `conv3` at 32 px), ResNet-18 "modified" at <= 64 px (the 3x3 stride-1 stem,
#: default-initialised, no max-pool) with batch norm; RDED has no ResNetAP-10: `detdistill`'s.
#: Widths are a separate setting (`model_width`).
ARCHITECTURES = ("detdistill", "minimax", "rded")
#: the config key of the models' base width, whose schema default is the width of a model no setting names
WIDTH_SETTING = "dataset.evaluation.width"
DEFAULT_WIDTH: int = schema.section(WIDTH_SETTING)["default"]
#: input normalisation (the models normalise their own [0, 1] inputs)
NORMALIZATIONS = {"half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                  "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def model_width(width: int | dict | None, name: str) -> int:
    """The base width model `name` is built with, from a width setting (`evaluation.width`): one
    integer for every model, or a mapping model -> width (a model it leaves out: DEFAULT_WIDTH)."""
    if width is None:
        return DEFAULT_WIDTH
    if isinstance(width, dict):
        return int(width.get(name, DEFAULT_WIDTH))
    return int(width)


def _instance_norm(channels: int) -> nn.GroupNorm:
    # GroupNorm with one group per channel = instance norm with affine parameters, as in the
    # dataset-distillation code ("instancenorm"); unlike BatchNorm it is independent of batch size,
    # which matters when training on a handful of distilled images.
    return nn.GroupNorm(channels, channels, affine=True)


class Classifier(nn.Module):
    """Normalisation -> backbone (to pooled features, (N,D)) -> linear classifier."""

    def __init__(self, backbone: nn.Module, classifier: nn.Linear,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        # Persistent buffers: saved in the state_dict, so a loaded model keeps its normalisation.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.build_args: dict = {}  # filled by build_model; save_model stores it

    @property
    def feature_dim(self) -> int:
        return self.classifier.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class EvaluationModel(ABC):
    """One architecture: its `name` (the config's `evaluation.models` entry), whether the width
    setting reaches it, its backbone and its Grad-CAM layer. Register a subclass with
    `@MODELS.register`."""

    name: ClassVar[str]
    #: whether `evaluation.width` sets its width (then config/schema.yaml's `evaluation.width` has
    #: a property of its name)
    takes_width: ClassVar[bool] = True

    @abstractmethod
    def backbone(self, image_size: int, width: int, architecture: str) -> tuple[nn.Module, int]:
        """The backbone from [0, 1]-normalised images (N,3,H,W) to pooled features (N,D), and D."""

    #: `cam_layer(model)`: the module of a built `Classifier` whose output Grad-CAM reads (its
    #: last spatial map); None: the model has none, and Grad-CAM of it stops at the look-up
    cam_layer = None


MODELS: Registry[EvaluationModel] = Registry("evaluation model", "evaluation.models")
