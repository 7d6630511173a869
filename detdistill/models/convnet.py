"""ConvNet: blocks of conv 3x3 -> norm -> ReLU -> 2x average pooling until the map is at most 4 px."""

from __future__ import annotations

import torch.nn as nn

from .base import MODELS, EvaluationModel, _instance_norm


def convnet_depth(image_size: int) -> int:
    """Halvings until the map is at most 4 px, at least one: 32->3, 64->4, 128->5, 256->6."""
    depth, size = 0, image_size
    while size > 4:
        size //= 2
        depth += 1
    return max(depth, 1)


@MODELS.register
class ConvNet(EvaluationModel):
    name = "convnet"

    def backbone(self, image_size: int, width: int, architecture: str) -> tuple[nn.Module, int]:
        norm = nn.BatchNorm2d if architecture == "rded" else _instance_norm
        layers, in_ch, size = [], 3, image_size
        for _ in range(convnet_depth(image_size)):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), norm(width), nn.ReLU(inplace=True),
                       nn.AvgPool2d(2)]
            in_ch, size = width, size // 2
        return nn.Sequential(*layers, nn.Flatten()), width * size * size

    def cam_layer(self, model: nn.Module) -> nn.Module:
        """The last ReLU, before the last pooling: the finest map that has seen the whole network
        (the backbone ends [..., ReLU, AvgPool2d, Flatten])."""
        return model.backbone[-3]
