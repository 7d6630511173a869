"""ResNet-18: torchvision's, with a low-resolution stem at small image sizes."""

from __future__ import annotations

import torch.nn as nn

from .base import MODELS, EvaluationModel, _instance_norm


@MODELS.register
class ResNet18(EvaluationModel):
    name = "resnet18"
    #: torchvision's BasicBlock supports the standard 64-base width only (Minimax's and RDED's too)
    takes_width = False

    def backbone(self, image_size: int, width: int, architecture: str) -> tuple[nn.Module, int]:
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

    def cam_layer(self, model: nn.Module) -> nn.Module:
        """layer4, the network's last spatial map."""
        return model.backbone.layer4
