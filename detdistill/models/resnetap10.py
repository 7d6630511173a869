"""ResNetAP-10: a ResNet-10 whose blocks downsample with 2x2 average pooling instead of strided
convs, with instance norm."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import MODELS, EvaluationModel, _instance_norm


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


@MODELS.register
class ResNetAP10(EvaluationModel):
    name = "resnetap10"

    def backbone(self, image_size: int, width: int, architecture: str) -> tuple[nn.Module, int]:
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

    def cam_layer(self, model: nn.Module) -> nn.Module:
        """The last block, before the global pooling (the backbone ends [..., BasicBlockAP,
        AdaptiveAvgPool2d, Flatten])."""
        return model.backbone[-3]
