"""One source of defaults (config/schema.yaml) for the workflow and the library, unknown keys
rejected, and the library pieces of the embedded generator's training set up as documented."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from snakemake.utils import validate

from detdistill import schema
from detdistill.train import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig


def test_train_config_defaults_are_the_schemas():
    props = schema.section("train")["properties"]
    assert sorted(f.name for f in dataclasses.fields(TrainConfig)) == sorted(props)
    expected = {**schema.defaults("train"), "crop_scale": tuple(schema.defaults("train")["crop_scale"])}
    assert dataclasses.asdict(TrainConfig()) == expected
    for choices, key in [(OPTIMIZERS, "optimizer"), (SCHEDULES, "schedule"), (PRECISIONS, "precision")]:
        assert list(choices) == props[key]["enum"], key


def test_unknown_keys_are_named():
    with pytest.raises(schema.UnknownKeys) as error:
        TrainConfig.from_dict({"epochs": 2, "learning_rate": 0.1})
    assert "learning_rate" in str(error.value) and "lr" in str(error.value) and "\n" not in str(error.value)

    from detdistill.generators.embedded import train_embedded_generator

    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(schema.UnknownKeys) as error:  # before any training
        train_embedded_generator(images, torch.tensor([0, 1]), ["a", "b"], {"vae_step": 3}, "unused", "cpu")
    message = str(error.value)
    assert "generator.train" in message and "vae_step" in message and "vae_steps" in message


def test_validate_fills_the_generator_training_defaults():
    """Snakemake's validate (set_default) gives a dataset without generator.train every default,
    and a partial one the missing defaults: the values the library falls back on."""
    config = {"seed": 0, "datasets": {"d": {
        "source": {"kind": "digits"}, "image_size": 32,
        "generator": {"backend": "embedded", "train": {"vae_steps": 5}},
        "prototypes": {}, "synthesis": {"strength": 0.5, "guidance": 1, "steps": 2},
        "refinement": {"beta": 0.9, "top_k": 1, "n_candidates": 2},
        "detector": {"model": "convnet", "train": {}}, "judge": {"model": "convnet", "train": {}},
        "evaluation": {"models": ["convnet"], "seeds": [0], "image_size": 32, "train": {}},
    }}}
    validate(config, str(schema.SCHEMA))
    dataset = config["datasets"]["d"]
    assert dataset["generator"]["train"] == {**schema.defaults("embedded_train"), "vae_steps": 5}
    assert TrainConfig.from_dict(dataset["detector"]["train"]) == TrainConfig()

    del dataset["generator"]["train"]
    validate(config, str(schema.SCHEMA))
    assert dataset["generator"]["train"] == schema.defaults("embedded_train")


def test_warmup_cosine_schedule():
    """Linear warm-up from 0 over 5 % of the steps, peak, cosine down to 10 % of the peak at the end."""
    from detdistill.generators.embedded import _warmup_cosine

    steps, warmup, peak = 200, 10, 1e-3
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched = _warmup_cosine(opt, steps)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:warmup + 1] == pytest.approx([peak * k / warmup for k in range(warmup + 1)])
    middle = (steps + warmup) // 2
    assert lrs[middle] == pytest.approx(peak * 0.55, rel=1e-3)
    assert lrs[-1] == pytest.approx(peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (steps - 1 - warmup) / (steps - warmup)))))
    assert min(lrs[warmup:]) >= peak * 0.1


def test_ema_keeps_the_configured_decay_meaning():
    """After update k (from 0) the EMA moved by 1 - (1 + k) / (10 + k), never by less than 1 - ema_decay."""
    from detdistill.generators.embedded import _ema

    param = torch.nn.Parameter(torch.zeros(()))
    ema = _ema([param], decay=0.9)
    expected = 0.0
    for k in range(40):
        with torch.no_grad():
            param.fill_(float(k + 1))
        ema.step([param])
        decay = 0.0 if k == 0 else min(0.9, (1 + k) / (10 + k))
        expected = decay * expected + (1 - decay) * (k + 1)
        assert ema.shadow_params[0].item() == pytest.approx(expected, rel=1e-6), k
    ema.copy_to([param])
    assert param.item() == pytest.approx(expected, rel=1e-6)


def test_kl_term_is_per_latent_element():
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from detdistill.generators.embedded import _kl_per_element

    dist = DiagonalGaussianDistribution(torch.randn(3, 8, 5, 5, generator=torch.Generator().manual_seed(0)))
    per_element = 0.5 * (dist.mean.pow(2) + dist.var - 1.0 - dist.logvar).mean()
    assert _kl_per_element(dist).item() == pytest.approx(per_element.item(), rel=1e-6)
