"""The embedded latent diffusion generator: a tiny one trained in seconds on 40 digits of 3 classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from detdistill.data import digits_manifest, load_digits_images
from detdistill.generators import load_generator
from detdistill.generators.embedded import DEFAULT_CONFIG, EmbeddedGenerator, train_embedded_generator

from batching import (
    PROTOTYPES_PER_CLASS,
    batched_candidates,
    check_groupings_agree,
    per_image_candidates,
    prototype_table,
    stage_outputs_by_grouping,
)

TINY_CFG = {
    "vae_steps": 3,
    "unet_steps": 4,
    "batch_size": 8,
    "vae_channels": [8, 16, 16],
    "unet_channels": [8, 16],
    "cross_attention_dim": 8,
    "seed": 3,
}
CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def digits():
    manifest = digits_manifest(test_fraction=0.2, seed=0)
    rows = manifest[(manifest.split == "train") & (manifest.label < 3)].groupby("label").head(14).head(40)
    images = load_digits_images(rows.source.astype(int).to_numpy(), 32)
    return images, torch.tensor(rows.label.to_numpy())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    images, labels = digits
    out = tmp_path_factory.mktemp("gen") / "digits"
    lines: list[str] = []
    train_embedded_generator(images, labels, CLASSES, TINY_CFG, out, "cpu", log=lines.append)
    return out, lines


@pytest.fixture(scope="module")
def gen(trained):
    return load_generator(trained[0], "cpu")


def test_checkpoint_layout_and_metadata(trained):
    out, lines = trained
    meta = json.loads((out / "generator.json").read_text())
    assert meta["backend"] == "embedded"
    assert meta["class_names"] == CLASSES
    assert meta["image_size"] == 32
    assert meta["train_config"] == {**DEFAULT_CONFIG, **TINY_CFG}
    assert set(meta["final_losses"]) == {"vae_mse", "unet_eps_mse"}
    assert all(v == v for v in meta["final_losses"].values())  # not NaN
    for rel in ["vae/config.json", "vae/diffusion_pytorch_model.safetensors", "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"]:
        assert (out / rel).is_file(), rel
    assert load_file(str(out / "label_embedding.safetensors"))["weight"].shape == (len(CLASSES) + 1, 8)
    sched = json.loads((out / "scheduler/scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDIMScheduler"
    assert sched["clip_sample"] is False and sched["steps_offset"] == 1
    # atomic write: no temp folders left beside the checkpoint
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    assert any("unet step" in line for line in lines)


def test_load_generator_dispatch(gen, trained):
    assert isinstance(gen, EmbeddedGenerator)
    assert gen.class_names == CLASSES and gen.image_size == 32
    # scaling_factor survives save/load (it is a construction argument, not register_to_config)
    vae_cfg = json.loads((trained[0] / "vae/config.json").read_text())
    assert gen.scaling_factor == pytest.approx(vae_cfg["scaling_factor"])
    assert gen.scaling_factor != pytest.approx(0.18215)
    # the stock pipeline left our sampling scheduler as configured
    assert gen.pipe.scheduler.config.steps_offset == 1
    assert gen.pipe.scheduler.config.clip_sample is False


def test_load_generator_unknown_backend(tmp_path):
    (tmp_path / "generator.json").write_text(json.dumps({"backend": "nope"}))
    with pytest.raises(ValueError, match=r"^unknown generator backend 'nope' \(.*generator\.json\); known: embedded, sd15$"):
        load_generator(tmp_path, "cpu")


def test_load_generator_sd15_dispatch(tmp_path, monkeypatch):
    """generator.json's backend picks the loader; speed options left at None are not passed on."""
    from detdistill.generators import sd15

    calls = []

    class Fake:
        @classmethod
        def load(cls, path, device):
            calls.append((path, device))
            return "sd15-generator"

    monkeypatch.setattr(sd15, "StableDiffusionGenerator", Fake)
    (tmp_path / "generator.json").write_text(json.dumps({"backend": "sd15"}))
    assert load_generator(tmp_path, "cpu", dtype=None, compile_unet=None) == "sd15-generator"
    assert calls == [(tmp_path, "cpu")]


def test_encode_shape_and_determinism(gen, digits):
    images = digits[0][:6]
    z = gen.encode(images.float() / 255)
    assert z.shape == (6, 4, 8, 8) and z.dtype == torch.float32
    assert torch.equal(z, gen.encode(images.float() / 255))
    assert torch.allclose(z, gen.encode(images), atol=1e-6)  # uint8 accepted


def test_img2img_shape_range_and_per_image_seeds(gen, digits):
    images, labels = digits
    z = gen.encode(images[:6])
    labs = labels[:6].tolist()
    seeds = [11, 12, 13, 14, 15, 16]
    kw = dict(strength=0.8, guidance=3.0, steps=5)
    out = gen.img2img(z, labs, seeds, **kw)
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, gen.img2img(z, labs, seeds, **kw))
    # an image depends on its (latent, label, seed) only, not on the batch it was made in
    order = [4, 1, 5]
    part = gen.img2img(z[order], [labs[i] for i in order], [seeds[i] for i in order], **kw)
    torch.testing.assert_close(part, out[order], atol=1e-4, rtol=0)
    old = gen.batch_size
    try:
        gen.batch_size = 2
        torch.testing.assert_close(gen.img2img(z, labs, seeds, **kw), out, atol=1e-4, rtol=0)
    finally:
        gen.batch_size = old
    other = gen.img2img(z[:1], labs[:1], [99], **kw)
    assert not torch.allclose(other, out[:1], atol=1e-3)


def test_sample_and_bad_labels(gen):
    imgs = gen.sample([0, 2], [1, 2], guidance=2.0, steps=3)
    assert imgs.shape == (2, 3, 32, 32) and imgs.min() >= 0 and imgs.max() <= 1
    with pytest.raises(ValueError):
        gen.sample([3], [1], guidance=2.0, steps=3)


def test_training_is_seeded_and_replaces_atomically(tmp_path, digits, trained):
    images, labels = digits
    out = tmp_path / "again"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    train_embedded_generator(images, labels, CLASSES, TINY_CFG, out, "cpu")
    for rel in ["vae/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                "label_embedding.safetensors"]:
        a, b = load_file(str(trained[0] / rel)), load_file(str(out / rel))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), rel
    # the old checkpoint folder was replaced as a whole, and no temp folders are left
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


BATCHED = {"strength": 0.8, "guidance": 3.0, "steps": 5, "batch_size": 4}


@pytest.fixture(scope="module")
def prototypes(gen, digits):
    images, labels = digits
    index = [i for y in range(len(CLASSES)) for i in (labels == y).nonzero().flatten()[:PROTOTYPES_PER_CLASS].tolist()]
    return prototype_table(gen, images[index], labels[index].tolist())


def test_candidates_batched_across_images_match_per_image_calls(gen, prototypes):
    """15 candidate rows of 5 defective images in 3 classes, in chunks of 4, against one call per
    defective image: the same float images (max abs diff < 1e-5)."""
    batched = batched_candidates(gen, prototypes, BATCHED)
    reference = per_image_candidates(gen, prototypes, BATCHED)
    assert batched.shape == reference.shape == (15, 3, 32, 32)
    assert (batched - reference).abs().max().item() < 1e-5


def test_stage_outputs_do_not_depend_on_class_grouping(tmp_path, trained, prototypes, monkeypatch):
    """synthesize_initial / generate_candidates for 3 classes in one job (chunks of 4 across classes)
    write the manifests and PNGs of one job per class; pixels equal up to one rounding step."""
    outputs = stage_outputs_by_grouping(tmp_path, trained[0], prototypes, BATCHED, monkeypatch)
    assert check_groupings_agree(outputs) <= 1
    initial = outputs["initial", "all"][0]
    assert initial.image_id.tolist() == [f"c{y}-p{p:03d}" for y in range(3) for p in range(2)]
    assert [Path(p).name for p in initial.image_path] == [f"{i}.png" for i in initial.image_id]
