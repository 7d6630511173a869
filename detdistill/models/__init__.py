"""Classifier architectures used to evaluate distilled sets: ConvNet, ResNetAP-10, ResNet-18, one
file each, registered in `MODELS` when this package is imported.

Every model is a `Classifier`: inputs are float images in [0,1] (N,3,H,W); the model normalises
them itself, so `forward(x) == classifier(features(x))` and callers never normalise.
"""

from __future__ import annotations

import torch.nn as nn

from . import convnet, resnet18, resnetap10  # noqa: F401  (each registers its model)
from .base import (
    ARCHITECTURES,
    DEFAULT_WIDTH,
    MODELS,
    NORMALIZATIONS,
    Classifier,
    EvaluationModel,
    model_width,
)
from .convnet import convnet_depth
from .resnetap10 import BasicBlockAP

#: the models this package ships, in their registration order
MODEL_NAMES = MODELS.names()

__all__ = ["ARCHITECTURES", "DEFAULT_WIDTH", "MODELS", "MODEL_NAMES", "NORMALIZATIONS", "BasicBlockAP", "Classifier",
           "EvaluationModel", "build_model", "convnet_depth", "model_width"]


def build_model(name: str, num_classes: int, image_size: int, width: int = DEFAULT_WIDTH,
                architecture: str = "detdistill", normalization: str = "half") -> Classifier:
    """Build a classifier by name (a model registered in `MODELS`). `width` is ignored by models
    that do not take one (resnet18: torchvision's BasicBlock only supports the standard 64-base
    width); `architecture` and `normalization`: see ARCHITECTURES and NORMALIZATIONS."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    backbone, dim = MODELS.get(name, "build_model's name").backbone(image_size, width, architecture)
    model = Classifier(backbone, nn.Linear(dim, num_classes), *NORMALIZATIONS[normalization])
    model.build_args = {"name": name, "num_classes": int(num_classes), "image_size": int(image_size),
                        "width": int(width)}
    # recorded only when not the default, so files saved before these options keep their bytes
    if architecture != "detdistill":
        model.build_args["architecture"] = architecture
    if normalization != "half":
        model.build_args["normalization"] = normalization
    return model
