"""Classifier architectures used to evaluate distilled sets: ConvNet, ResNetAP-10, ResNet-18.

Every model is a `Classifier`: inputs are float images in [0,1] (N,3,H,W); the model normalises
them itself, so `forward(x) == classifier(features(x))` and callers never normalise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("convnet", "resnetap10", "resnet18")
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
#: base width of convnet and resnetap10 where no setting names one; ResNet-18 is always 64 wide
DEFAULT_WIDTH = 64
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


# --------------------------------------------------------------------------- ConvNet
def convnet_depth(image_size: int) -> int:
    """Halvings until the map is at most 4 px, at least one: 32->3, 64->4, 128->5, 256->6."""
    depth, size = 0, image_size
    while size > 4:
        size //= 2
        depth += 1
    return max(depth, 1)


def _convnet(image_size: int, width: int, architecture: str = "detdistill") -> tuple[nn.Module, int]:
    norm = nn.BatchNorm2d if architecture == "rded" else _instance_norm
    layers, in_ch, size = [], 3, image_size
    for _ in range(convnet_depth(image_size)):
        layers += [nn.Conv2d(in_ch, width, 3, padding=1), norm(width), nn.ReLU(inplace=True),
                   nn.AvgPool2d(2)]
        in_ch, size = width, size // 2
    return nn.Sequential(*layers, nn.Flatten()), width * size * size


# --------------------------------------------------------------------------- ResNetAP-10
class BasicBlockAP(nn.Module):
    """ResNet basic block that downsamples with 2x2 average pooling instead of strided convs."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.pool = nn.AvgPool2d(2) if stride != 1 else nn.Identity()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.norm1 = _instance_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = _instance_norm(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            # Pooling and the 1x1 conv are both linear, so their order is immaterial; pool first is cheaper.
            self.shortcut = nn.Sequential(nn.AvgPool2d(2) if stride != 1 else nn.Identity(),
                                          nn.Conv2d(in_ch, out_ch, 1, bias=False), _instance_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(F.relu(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _resnetap10_stem(image_size: int, architecture: str) -> tuple[int, int]:
    """(stem kernel, pooling after the stem). Minimax (IDC's ResNetAP) sizes its stem by the
    image: 'large' > 128 px, 'mid' 65-128, 'small' <= 64."""
    if architecture == "minimax":
        return (7, 4) if image_size > 128 else (3, 2) if image_size > 64 else (3, 1)
    # Large images: reduce 4x right after the stem (as torchvision's conv-stride-2 + maxpool stem
    # does) so the four stages run at 1/4..1/32 resolution; pooling keeps the net stride-free.
    return (3, 4) if image_size > 64 else (3, 1)


def _resnetap10(image_size: int, width: int, architecture: str = "detdistill") -> tuple[nn.Module, int]:
    kernel, pool = _resnetap10_stem(image_size, architecture)
    stem = [nn.Conv2d(3, width, kernel, padding=kernel // 2, bias=False), _instance_norm(width), nn.ReLU(inplace=True)]
    if pool > 1:
        stem.append(nn.AvgPool2d(pool))
    widths = [width, 2 * width, 4 * width, 8 * width]
    blocks, in_ch = [], width
    for i, w in enumerate(widths):
        blocks.append(BasicBlockAP(in_ch, w, stride=1 if i == 0 else 2))
        in_ch = w
    backbone = nn.Sequential(*stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if architecture == "minimax":
        # its convs start from N(0, 2 / (k^2 out_channels)), He's fan-out init, not PyTorch's default
        for module in backbone.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return backbone, in_ch


# --------------------------------------------------------------------------- ResNet-18
def _resnet18(image_size: int, architecture: str = "detdistill") -> tuple[nn.Module, int]:
    from torchvision.models import resnet18

    # Minimax builds its ResNet-18 with instance norm (GroupNorm(C, C)) by default; torchvision's
    # is otherwise the same network (7x7 stride-2 stem and max-pool at ImageNet sizes)
    net = resnet18(weights=None, norm_layer=_instance_norm if architecture == "minimax" else None)
    if image_size <= 64 or (architecture == "minimax" and image_size <= 128):
        # Low-resolution (CIFAR / RDED) stem: 3x3 stride-1 conv; Minimax keeps the max-pool at 65-128 px
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        if architecture != "rded":  # RDED swaps the conv in after torchvision's init: PyTorch's default
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        if image_size <= 64:
            net.maxpool = nn.Identity()
    dim = net.fc.in_features
    net.fc = nn.Identity()  # the backbone returns pooled features; the Linear lives in Classifier
    return net, dim


def build_model(name: str, num_classes: int, image_size: int, width: int = 64,
                architecture: str = "detdistill", normalization: str = "half") -> Classifier:
    """Build a classifier by name. `width` is ignored for resnet18 (torchvision's BasicBlock only
    supports the standard 64-base width); `architecture` and `normalization`: see ARCHITECTURES
    and NORMALIZATIONS."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if name == "convnet":
        backbone, dim = _convnet(image_size, width, architecture)
    elif name == "resnetap10":
        backbone, dim = _resnetap10(image_size, width, architecture)
    elif name == "resnet18":
        backbone, dim = _resnet18(image_size, architecture)
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    model = Classifier(backbone, nn.Linear(dim, num_classes), *NORMALIZATIONS[normalization])
    model.build_args = {"name": name, "num_classes": int(num_classes), "image_size": int(image_size),
                        "width": int(width)}
    # recorded only when not the default, so files saved before these options keep their bytes
    if architecture != "detdistill":
        model.build_args["architecture"] = architecture
    if normalization != "half":
        model.build_args["normalization"] = normalization
    return model
