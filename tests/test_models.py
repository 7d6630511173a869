"""Model architectures, training loop determinism and checkpoint round trips (fast, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from detdistill.models import MODEL_NAMES, build_model, convnet_depth
from detdistill.train import TrainConfig, accuracy, fit_classifier, load_model, predict, read_model_meta, save_model

CPU = torch.device("cpu")


def _small(name, num_classes=5, size=32):
    # Narrow widths keep the tests fast; resnet18 ignores width.
    torch.manual_seed(0)
    return build_model(name, num_classes, size, width=8)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shapes_and_feature_contract(name, size):
    model = _small(name, size=size).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (2, 5)
    assert feats.shape == (2, model.feature_dim) == (2, model.classifier.in_features)
    assert isinstance(model.classifier, nn.Linear)
    torch.testing.assert_close(logits, model.classifier(feats))


def test_convnet_depth():
    assert [convnet_depth(s) for s in (8, 16, 32, 64, 128, 256)] == [1, 2, 3, 4, 5, 6]
    model = build_model("convnet", 10, 32)
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 3
    assert model.feature_dim == 64 * 4 * 4
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == m.num_channels for m in norms)


def test_resnet18_low_res_stem():
    low = build_model("resnet18", 10, 32).backbone
    assert low.conv1.kernel_size == (3, 3) and low.conv1.stride == (1, 1)
    assert isinstance(low.maxpool, nn.Identity)
    high = build_model("resnet18", 10, 128).backbone
    assert high.conv1.kernel_size == (7, 7) and isinstance(high.maxpool, nn.MaxPool2d)


def test_resnetap10_structure():
    model = build_model("resnetap10", 10, 32)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.stride == (1, 1) for m in convs)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == m.num_channels for m in norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.feature_dim == 512
    # 4 blocks (one per stage) + global pool; 3 stages downsample with AvgPool2d(2) in both branches
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 6


def test_unknown_model():
    with pytest.raises(ValueError, match=r"^unknown evaluation model 'vgg' \(.*\); known: convnet, .*resnet18") as error:
        build_model("vgg", 10, 32)
    assert "\n" not in str(error.value)


def _bright_dark(n=40, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = torch.where(labels == 1, 180, 60).view(-1, 1, 1, 1)
    noise = torch.randint(-40, 41, (n, 3, size, size), generator=g)
    return (base + noise).clamp(0, 255).to(torch.uint8), labels.long()


def _train(seed=0, **overrides):
    images, labels = _bright_dark()
    torch.manual_seed(seed)
    model = build_model("convnet", 2, 16, width=8)
    cfg = TrainConfig.from_dict({"epochs": 8, "batch_size": 8, "lr": 0.01, "seed": seed, **overrides})
    history = fit_classifier(model, images, labels, cfg, CPU)
    return model, history, images, labels


def test_train_learns_and_is_deterministic():
    model_a, history, images, labels = _train()
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert history[-1]["lr"] < history[0]["lr"]  # multistep decay happened
    assert accuracy(model_a, images, labels, CPU) >= 0.95
    model_b, _, _, _ = _train()
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_training_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    images, labels = _bright_dark(n=6)
    model = build_model("convnet", 2, 16, width=4)
    torch.manual_seed(123)
    fit_classifier(model, images, labels, TrainConfig(epochs=1), CPU)
    assert torch.equal(torch.rand(3), expected)


def test_batch_larger_than_dataset_and_options():
    images, labels = _bright_dark(n=6)
    model = build_model("convnet", 3, 16, width=4)  # 3 classes, only 2 present: CutMix width = logits width
    cfg = TrainConfig(epochs=3, batch_size=64, optimizer="adam", schedule="cosine", crop_scale=None, flip=False)
    history = fit_classifier(model, images, labels, cfg, CPU, log=lambda s: None)
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def test_short_multistep_keeps_initial_lr():
    images, labels = _bright_dark(n=6)
    history = fit_classifier(build_model("convnet", 2, 16, width=4), images, labels,
                             TrainConfig(epochs=1, lr=0.05), CPU)
    assert history[0]["lr"] == 0.05


def test_config_from_dict():
    cfg = TrainConfig.from_dict({"epochs": 3, "lr": None, "crop_scale": [0.3, 1.0]})
    assert cfg.epochs == 3 and cfg.lr == TrainConfig.lr and cfg.crop_scale == (0.3, 1.0)
    assert TrainConfig.from_dict({"crop_scale": False}).crop_scale is None
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_round_trip(tmp_path, name):
    model = _small(name, num_classes=3, size=16)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    path = tmp_path / f"{name}.safetensors"
    save_model(model, path, {"dataset": "toy", "ipc": 2})
    loaded = load_model(path, CPU)
    assert read_model_meta(path) == {"build_args": model.build_args, "meta": {"dataset": "toy", "ipc": 2}}
    a, b = predict(model, images, CPU), predict(loaded, images, CPU)
    assert set(a) == {"logits", "probs", "features"}
    for key in a:
        assert a[key].dtype == torch.float32
        assert torch.equal(a[key], b[key])
    torch.testing.assert_close(a["probs"].sum(1), torch.ones(4))
    # float [0,1] input gives the same result as uint8
    torch.testing.assert_close(predict(model, images.float() / 255, CPU)["logits"], a["logits"])
