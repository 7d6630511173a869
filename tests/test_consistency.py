"""The consistency term on unlabeled images (detdistill.train, used by the trust stage's rounds)."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detdistill.augment import build_augment
from detdistill.models import build_model
from detdistill.train import EngineOptions, TrainConfig, predict, to_float, train_classifiers
from detdistill.trust import TrustConfig, split_by_trust

CFG = TrainConfig(epochs=6, batch_size=16, optimizer="adam", lr=0.003, crop_size=16, crop_scale=(0.5, 1.0),
                  cutmix_alpha=0.0, flip=True, seed=0)


def _digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as uint8 RGB at 16 px (the first n after a seeded shuffle)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))[:n]
    pixels = torch.from_numpy(digits.images[order] * (255 / 16)).round().to(torch.uint8)
    images = pixels.repeat_interleave(2, 1).repeat_interleave(2, 2).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return images, torch.from_numpy(digits.target[order]).long()


def _trained(weight: float, unlabeled: torch.Tensor | None, images, labels, cfg: TrainConfig = CFG):
    torch.manual_seed(0)
    model = build_model("convnet", 10, 16, 8)
    train_classifiers([model], [0], images, labels, cfg, torch.device("cpu"),
                      EngineOptions(unlabeled=unlabeled, consistency_weight=weight))
    return model


def test_without_weight_nothing_is_drawn():
    """w = 0 (or no unlabeled image) trains bit for bit as before the option; w > 0 changes the run."""
    images, labels = _digits(48)
    unlabeled, _ = _digits(64, seed=1)
    plain = _trained(0.0, None, images, labels).state_dict()
    for weight, pool in [(0.0, unlabeled), (1.0, unlabeled[:0])]:
        same = _trained(weight, pool, images, labels).state_dict()
        assert all(torch.equal(plain[k], same[k]) for k in plain)
    changed = _trained(1.0, unlabeled, images, labels).state_dict()
    assert not all(torch.equal(plain[k], changed[k]) for k in plain)


def _view_disagreement(model, images: torch.Tensor) -> float:
    """Mean KL between the model's softmax on two fixed augmentations of each image."""
    augment = build_augment(16, crop_scale=CFG.crop_scale, crop_size=16, color_jitter=0.0, flip=True, lighting_std=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        first, second = augment(to_float(images)), augment(to_float(images))
    p = predict(model, first, "cpu")["probs"]
    log_q = predict(model, second, "cpu")["logits"].log_softmax(-1)
    return float(F.kl_div(log_q, p, reduction="batchmean"))


def test_consistency_makes_the_views_of_unlabeled_images_agree():
    """The term does what it is for: after training with it, the model's predictions on two
    augmentations of the unlabeled images disagree less than without it (a sign error, a target
    that is not detached or views drawn identically would break this)."""
    images, labels = _digits(48)
    unlabeled, _ = _digits(256, seed=1)
    longer = dataclasses.replace(CFG, epochs=40, schedule="constant")  # 120 steps: confident predictions
    without = _view_disagreement(_trained(0.0, unlabeled, images, labels, longer), unlabeled)
    with_term = _view_disagreement(_trained(3.0, unlabeled, images, labels, longer), unlabeled)
    assert with_term < 0.7 * without, (with_term, without)


def test_teacher_and_consistency_are_not_combined():
    images, labels = _digits(16)
    with pytest.raises(ValueError, match="cannot be combined"):
        train_classifiers([build_model("convnet", 10, 16, 8)], [0], images, labels, CFG, "cpu",
                          EngineOptions(teacher=build_model("convnet", 10, 16, 8), unlabeled=images, consistency_weight=1.0))


def test_trust_rounds_use_the_term_on_the_untrusted_images():
    """split_by_trust with a consistency weight trains its rounds with the term (a different model than
    without it) and still returns one table row per image and one per round."""
    images, clean = _digits(300)
    observed = clean.numpy().copy()
    flip = np.random.default_rng(0).random(len(observed)) < 0.3
    observed[flip] = (observed[flip] + 1 + np.random.default_rng(1).integers(0, 9, flip.sum())) % 10
    base = TrustConfig(rounds=2, warmup_epochs=3, epochs_per_round=2, trust_threshold=0.5,
                       recalibration_confidence=0.9, min_class_samples=4, consistency_weight=0.0)
    results = {}
    for weight in (0.0, 2.0):
        torch.manual_seed(0)
        model = build_model("convnet", 10, 16, 8)
        samples, rounds = split_by_trust(model, images, observed, clean.numpy(), 10, dataclasses.replace(CFG, epochs=1),
                                         dataclasses.replace(base, consistency_weight=weight), "cpu", seed=0)
        assert len(samples) == len(images) and len(rounds) == 2
        assert samples.trusted.any() and not samples.trusted.all()
        results[weight] = samples.loss.to_numpy()
    assert not np.array_equal(results[0.0], results[2.0])
