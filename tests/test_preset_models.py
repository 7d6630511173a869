"""Each evaluation protocol preset builds exactly its source's models.

Every model is built the way a job builds it (the preset applied to a config, then
`stages.evaluation.evaluation_model`, which `train_on_set` calls), at 10 classes and the protocol's
image size, and compared with what the public code builds: the parameter count, worked out by hand
below, and the layers a forward pass runs through in order (every conv, norm, pooling and linear
layer with its settings and output shape), written out from the public definitions. Line numbers
cite vimar-gu/MinimaxDiffusion at 969fc6f (train.py, train_models/*.py), LINs-lab/RDED at 3f6453d
(synthesize/*.py) and torchvision 0.29 (models/resnet.py).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from detdistill import protocols
from detdistill.models import BasicBlockAP, model_width
from detdistill.stages.evaluation import evaluation_model

CLASSES = 10


def _job_config(protocol: str, image_size: int, **written) -> dict:
    """The evaluation section a job of dataset `d` reads, after the preset is applied."""
    config = {"datasets": {"d": {"evaluation": {"protocol": protocol, "models": ["convnet", "resnetap10", "resnet18"],
                                                "seeds": [0], "image_size": image_size, "train": {}, **written}}}}
    protocols.apply(config)
    return config["datasets"]["d"]["evaluation"]


def _job_model(protocol: str, name: str, image_size: int, **written) -> nn.Module:
    torch.manual_seed(0)
    return evaluation_model(_job_config(protocol, image_size, **written), name, CLASSES)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- the layers a forward runs

def _trace(model: nn.Module, size: int) -> list[tuple]:
    """(kind, settings..., output shape) of every conv, norm, pooling and linear layer, in the order
    the forward pass calls them."""
    calls = []

    def describe(module, output):
        shape = tuple(output.shape[1:])
        if isinstance(module, nn.Conv2d):
            return ("conv", module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0],
                    module.padding[0], module.bias is not None, shape)
        if isinstance(module, nn.GroupNorm):
            kind = "instance" if module.num_groups == module.num_channels else f"group{module.num_groups}"
            return (kind, module.num_channels, module.affine)
        if isinstance(module, nn.BatchNorm2d):
            return ("batch", module.num_features, module.affine)
        if isinstance(module, nn.AvgPool2d):
            return ("avgpool", module.kernel_size, shape)
        if isinstance(module, nn.MaxPool2d):
            return ("maxpool", module.kernel_size, module.stride, module.padding, shape)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return ("global_avgpool", shape)
        return ("linear", module.in_features, module.out_features, module.bias is not None)

    kinds = (nn.Conv2d, nn.GroupNorm, nn.BatchNorm2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Linear)
    handles = [m.register_forward_hook(lambda m, _, out: calls.append(describe(m, out)))
               for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return calls


def _pool_then_conv_as_conv_then_pool(trace: list[tuple]) -> list[tuple]:
    """Our ResNetAP shortcut pools before its 1x1 conv; Minimax's convs first (resnet_ap.py:228-233).
    Both are linear and the conv has no bias, so they are one function
    (test_shortcut_order_is_the_same_function); written here in Minimax's order."""
    out = list(trace)
    for i in range(len(out) - 1):
        pool, conv = out[i], out[i + 1]
        if pool[0] == "avgpool" and conv[0] == "conv" and conv[3] == 1 and not conv[6]:
            kernel, (_, height, width) = pool[1], pool[2]
            out[i] = (*conv[:7], (conv[2], height * kernel, width * kernel))  # the conv, at the unpooled size
            out[i + 1] = ("avgpool", kernel, conv[7])
    return out


# --------------------------------------------------------------------------- the public definitions, by hand

def _convnet_layers(depth: int, width: int, size: int, norm: str) -> list[tuple]:
    """Minimax train_models/convnet.py = RDED synthesize/models.py (same file): per layer
    Conv2d(in, width, 3, padding=1) with its default bias (convnet.py:117-121, models.py:123-129),
    the norm (instance = GroupNorm(C, C, affine) convnet.py:97; batch = BatchNorm2d(C, affine)
    models.py:98), ReLU, AvgPool2d(2, 2) (convnet.py:30, models.py:32) halving the size with
    floor (convnet.py:129-130); then Linear(width * h * w) on the flattened map (convnet.py:41-42)."""
    layers, in_ch = [], 3
    for _ in range(depth):
        layers += [("conv", in_ch, width, 3, 1, 1, True, (width, size, size)), (norm, width, True)]
        size //= 2
        layers.append(("avgpool", 2, (width, size, size)))
        in_ch = width
    return [*layers, ("linear", width * size * size, CLASSES, True)]


def _resnetap10_layers(width: int, size: int, stem: str) -> list[tuple]:
    """Minimax train_models/resnet_ap.py at depth 10 (non-CIFAR data): IntroBlock 'large' (> 128 px,
    :165-170) = 7x7 stride-1 conv, no bias with a norm (:9-21, :54), GroupNorm(C, C) (:41), ReLU,
    AvgPool2d(4, 4) (:57); 'small' (<= 64 px) = 3x3 conv, norm, ReLU, no pooling (:63-66).
    inplanes = int(64 * width) (:207); stages of [1, 1, 1, 1] BasicBlocks (:197) at 1x, 2x, 4x, 8x
    (:210-213); BasicBlock (:85-113): conv 3x3 -> norm -> ReLU -> avg_pool2d(stride) when stride != 1
    -> conv 3x3 -> norm, + the shortcut; shortcut when stride != 1 or channels change (:227):
    1x1 conv -> AvgPool2d(stride) -> norm (:228-235); global average pool (:258) and
    Linear(inplanes, classes) with inplanes then 8 x the base (:215, :244)."""
    layers = []
    if stem == "large":
        layers += [("conv", 3, width, 7, 1, 3, False, (width, size, size)), ("instance", width, True)]
        size //= 4
        layers.append(("avgpool", 4, (width, size, size)))
    else:
        layers += [("conv", 3, width, 3, 1, 1, False, (width, size, size)), ("instance", width, True)]
    in_ch = width
    for stage, out_ch in enumerate([width, 2 * width, 4 * width, 8 * width]):
        stride = 1 if stage == 0 else 2
        layers += [("conv", in_ch, out_ch, 3, 1, 1, False, (out_ch, size, size)), ("instance", out_ch, True)]
        if stride != 1:
            layers.append(("avgpool", 2, (out_ch, size // 2, size // 2)))
        layers += [("conv", out_ch, out_ch, 3, 1, 1, False, (out_ch, size // stride, size // stride)),
                   ("instance", out_ch, True)]
        if stride != 1 or in_ch != out_ch:
            layers += [("conv", in_ch, out_ch, 1, 1, 0, False, (out_ch, size, size)),
                       ("avgpool", 2, (out_ch, size // 2, size // 2)), ("instance", out_ch, True)]
        size //= stride
        in_ch = out_ch
    return [*layers, ("global_avgpool", (in_ch, 1, 1)), ("linear", in_ch, CLASSES, True)]


def _resnet18_layers(size: int, norm: str, stem: str) -> list[tuple]:
    """torchvision models/resnet.py (which Minimax's train_models/resnet.py follows): stem
    Conv2d(3, 64, 7, stride 2, padding 3, no bias) (:197; Minimax resnet.py:28), norm, ReLU,
    MaxPool2d(3, 2, 1) (:200; resnet.py:31); RDED's "modified" stem: Conv2d(3, 64, 3, 1, 1, no
    bias) and the max-pool an Identity (RDED synthesize/utils.py:192-196). Stages of 2 BasicBlocks
    at 64/128/256/512 (Minimax resnet.py:165, :176-182), the first block of stages 2-4 with stride 2
    on its first conv (:59, torchvision :81) and a shortcut 1x1 conv with that stride, no bias,
    then a norm (resnet.py:197-204, torchvision :240-241); block order conv, norm, ReLU, conv,
    norm, shortcut (resnet.py:68-84); global average pool (resnet.py:226, torchvision :205) and
    Linear(512, classes) (resnet.py:184; RDED prunes torchvision's 1,000-way fc to the classes,
    utils.py pruning_classifier)."""
    if stem == "large":
        layers = [("conv", 3, 64, 7, 2, 3, False, (64, size // 2, size // 2)), (norm, 64, True)]
        size //= 4
        layers.append(("maxpool", 3, 2, 1, (64, size, size)))
    else:
        layers = [("conv", 3, 64, 3, 1, 1, False, (64, size, size)), (norm, 64, True)]
    in_ch = 64
    for stage, out_ch in enumerate([64, 128, 256, 512]):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            after = size // stride
            layers += [("conv", in_ch, out_ch, 3, stride, 1, False, (out_ch, after, after)), (norm, out_ch, True),
                       ("conv", out_ch, out_ch, 3, 1, 1, False, (out_ch, after, after)), (norm, out_ch, True)]
            if stride != 1 or in_ch != out_ch:
                layers += [("conv", in_ch, out_ch, 1, stride, 0, False, (out_ch, after, after)), (norm, out_ch, True)]
            size, in_ch = after, out_ch
    return [*layers, ("global_avgpool", (512, 1, 1)), ("linear", 512, CLASSES, True)]


def _count(layers: list[tuple]) -> int:
    """Parameters of a layer list: conv in * out * k^2 (+ out bias), norm 2C (affine), linear in * out + out."""
    total = 0
    for layer in layers:
        if layer[0] == "conv":
            total += layer[1] * layer[2] * layer[3] ** 2 + (layer[2] if layer[6] else 0)
        elif layer[0] in ("instance", "batch"):
            total += 2 * layer[1]
        elif layer[0] == "linear":
            total += layer[1] * layer[2] + layer[2]
    return total


# --------------------------------------------------------------------------- the presets' models

# (preset, model, image size, the public code's layers, its parameter count worked out by hand)
CASES = [
    # Minimax ConvNet-6 at 224: train.py:60 net_width = int(128 * 1.0) = 128, depth 6 (the paper's
    # ConvNet-6, `--depth 6`), instance norm (argument.py:107-110 default); 224 -> 3 px after six
    # halvings. conv1 3*128*9 + 128 = 3,584; conv2-6 5 * (128*128*9 + 128) = 737,920; six norms
    # 6 * 256 = 1,536; fc 128*3*3*10 + 10 = 11,530; total 754,570.
    ("minimax", "convnet", 224, _convnet_layers(6, 128, 224, "instance"), 754_570),
    # Minimax ResNetAP-10 at 224: train.py:48-54 passes width=args.width = 1.0, resnet_ap.py:207
    # inplanes = int(64 * 1.0) = 64. stem 3*64*49 + 128 = 9,536; stage 1 2 * 64*64*9 + 2*128 =
    # 73,984; stage 2 64*128*9 + 128*128*9 + 64*128 + 3*256 = 230,144; stage 3 128*256*9 + 256*256*9
    # + 128*256 + 3*512 = 919,040; stage 4 256*512*9 + 512*512*9 + 256*512 + 3*1024 = 3,673,088;
    # fc 512*10 + 10 = 5,130; total 4,910,922 (at a base of 128 it would be 19,603,082).
    ("minimax", "resnetap10", 224, _resnetap10_layers(64, 224, "large"), 4_910_922),
    # Minimax ResNet-18 at 224 (resnet.py, 'large' stem, instance norm): torchvision's
    # resnet18 has 11,689,512 parameters at 1,000 classes; at 10 the fc loses 512*990 + 990 =
    # 507,870: 11,181,642 (GroupNorm(C, C) has BatchNorm's 2C affine parameters).
    ("minimax", "resnet18", 224, _resnet18_layers(224, "instance", "large"), 11_181_642),
    # RDED conv3 at 32 (utils.py:170-190: net_norm batch, net_width 128, depth 3 from the name):
    # conv1 3,584; conv2-3 2 * 147,584 = 295,168; norms 3 * 256 = 768; fc 128*4*4*10 + 10 =
    # 20,490; total 320,010.
    ("rded", "convnet", 32, _convnet_layers(3, 128, 32, "batch"), 320_010),
    # RDED resnet18_modified at 32 (utils.py:192-196): the 7x7 stem (3*64*49 = 9,408) becomes
    # 3x3 (3*64*9 = 1,728): 11,181,642 - 9,408 + 1,728 = 11,173,962.
    ("rded", "resnet18", 32, _resnet18_layers(32, "batch", "small"), 11_173_962),
    # RDED has no ResNetAP-10: the preset's is ours, Minimax's layout at <= 64 px ('small' stem,
    # resnet_ap.py:63-66) 64 wide: 4,910,922 - 9,408 + 1,728 = 4,903,242.
    ("rded", "resnetap10", 32, _resnetap10_layers(64, 32, "small"), 4_903_242),
]


@pytest.mark.parametrize(("protocol", "name", "size", "layers", "count"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}px" for c in CASES])
def test_the_preset_builds_the_public_code_model(protocol, name, size, layers, count):
    assert _count(layers) == count  # the layer list and the worked-out count agree
    model = _job_model(protocol, name, size)
    assert _params(model) == count
    assert _pool_then_conv_as_conv_then_pool(_trace(model, size)) == layers


def test_resnetap10_is_64_wide_under_minimax_while_convnet_stays_128():
    """The regression: one width (128) for every model built ResNetAP-10 at 19.6 M parameters."""
    evaluation = _job_config("minimax", 224)
    assert model_width(evaluation["width"], "resnetap10") == 64 and model_width(evaluation["width"], "convnet") == 128
    assert _params(_job_model("minimax", "resnetap10", 224)) < 5_000_000
    # one integer still widens every model, as configs written before the mapping do
    assert _params(_job_model("minimax", "resnetap10", 224, width=128)) == 19_603_082
    # a mapping the config writes merges into the preset's: the other model keeps the preset's width
    written = _job_config("minimax", 224, width={"resnetap10": 32})
    assert written["width"] == {"convnet": 128, "resnetap10": 32}


def test_a_width_mapping_leaves_unnamed_models_at_64_and_resnet18_is_always_64_wide():
    assert model_width({"convnet": 16}, "resnetap10") == 64 and model_width(None, "convnet") == 64
    assert model_width(24, "resnetap10") == 24 and model_width({"convnet": 16}, "convnet") == 16
    narrow = evaluation_model({"image_size": 32, "width": {"convnet": 16}}, "convnet", CLASSES)
    assert narrow.feature_dim == 16 * 4 * 4


def test_shortcut_order_is_the_same_function():
    """Our shortcut pools then applies the 1x1 conv; Minimax's (resnet_ap.py:228-235) convolves
    then pools: with no bias both are linear maps that commute."""
    torch.manual_seed(0)
    block = BasicBlockAP(8, 16, stride=2).eval()
    pool, conv, norm = block.shortcut
    x = torch.randn(2, 8, 12, 12)
    torch.testing.assert_close(norm(conv(pool(x))), norm(pool(conv(x))))


def test_minimax_resnetap10_convs_start_from_he_fan_out_init():
    """resnet_ap.py:217-220: every conv's weights ~ N(0, 2 / (k^2 out_channels))."""
    model = _job_model("minimax", "resnetap10", 224)
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-2]  # 3x3, 512 -> 512
    expected_std = (2 / (3 * 3 * 512)) ** 0.5
    assert last.weight.std().item() == pytest.approx(expected_std, rel=0.02)


def test_minimax_stems_at_65_to_128_px():
    """Minimax's 'mid' size (65-128 px): ResNetAP-10 a 3x3 stem then AvgPool2d(2) (resnet_ap.py:58-62),
    ResNet-18 a 3x3 stride-1 stem before its max-pool (resnet.py:32-36)."""
    ap = _trace(_job_model("minimax", "resnetap10", 128), 128)
    assert ap[0][:6] == ("conv", 3, 64, 3, 1, 1) and ap[2] == ("avgpool", 2, (64, 64, 64))
    r18 = _trace(_job_model("minimax", "resnet18", 128), 128)
    assert r18[0][:6] == ("conv", 3, 64, 3, 1, 1) and r18[2] == ("maxpool", 3, 2, 1, (64, 64, 64))


def test_presets_list_their_differences_and_the_workflow_prints_them():
    assert set(protocols.DIFFERENCES) == set(protocols.PRESETS)
    config = {"datasets": {"a": {"evaluation": {"protocol": "rded"}}, "b": {"evaluation": {}},
                           "c": {"evaluation": {"protocol": "rded"}}}}
    notes = protocols.apply(copy.deepcopy(config))
    # once per protocol in use, naming its datasets; `default` (b) has none
    assert notes[0] == "the rded protocol (datasets a, c) differs from its source on purpose in:"
    assert notes[1:] == [f"  - {line}" for line in protocols.DIFFERENCES["rded"]] and len(notes) > 1
    assert any("weight decay" in note for note in notes)
