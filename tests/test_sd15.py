"""The Stable Diffusion v1.5 backend on a tiny SD-shaped pipeline (offline, CPU), and a CPU smoke
run of the img2img speed benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detdistill.generators.sd15 import (
    DEFAULT_MODEL,
    MissingWeightsError,
    StableDiffusionGenerator,
    _download_hint,
    resolve_weights,
    write_generator_spec,
)

from batching import (
    PROTOTYPES_PER_CLASS,
    batched_candidates,
    check_groupings_agree,
    per_image_candidates,
    prototype_table,
    stage_outputs_by_grouping,
)
from sd_fixtures import IMAGE_SIZE, LATENT_SIZE, make_tiny_sd

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["tench", "church", "parachute"]
STEPS = dict(strength=0.7, guidance=10.0, steps=6)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a shared CPU extra threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "stable-diffusion-tiny")


@pytest.fixture(scope="module")
def spec_dir(tiny_sd, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generator")
    write_generator_spec(out, model=str(tiny_sd), class_names=CLASSES, image_size=IMAGE_SIZE)
    return out


@pytest.fixture(scope="module")
def generator(spec_dir) -> StableDiffusionGenerator:
    return StableDiffusionGenerator.load(spec_dir, torch.device("cpu"))


@pytest.fixture(scope="module")
def latents(generator) -> torch.Tensor:
    images = torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    return generator.encode(images)


def test_resolve_weights_local_folder(tiny_sd):
    assert resolve_weights(str(tiny_sd)) == tiny_sd.resolve()


def test_missing_folder_names_folder_and_command(tmp_path):
    folder = tmp_path / "models" / "sd15"
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(str(folder))
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(folder) in msg and "does not exist" in msg
    assert f"hf download {DEFAULT_MODEL}" in msg and f"--local-dir {folder}" in msg
    assert "huggingface-cli download" in msg and "generator.model" in msg


def test_readme_download_command_fetches_what_the_workflow_loads():
    """docs/reproduce.md's download line is the one the missing-weights message prints: the files
    loaded, not the whole hub repository (its checkpoints add tens of GB)."""
    readme = (Path(__file__).parents[1] / "docs" / "reproduce.md").read_text()
    assert ".venv/bin/" + _download_hint(DEFAULT_MODEL, "resources/stable-diffusion-v1-5") in readme


def test_folder_without_model_index(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(MissingWeightsError, match=r"lacks model_index\.json"):
        resolve_weights(str(tmp_path))


def test_missing_hub_id_looks_in_hf_cache_offline(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(DEFAULT_MODEL)
    msg = str(err.value)
    assert f"Hugging Face cache {cache}" in msg and f"hf download {DEFAULT_MODEL}" in msg
    assert "generator.model" in msg
    # a cache_dir argument overrides the environment
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "other")):
        resolve_weights(DEFAULT_MODEL, cache_dir=tmp_path / "other")


def test_resolve_weights_from_hf_cache(tiny_sd, tmp_path):
    """A snapshot laid out as huggingface_hub stores it is found offline."""
    import shutil

    repo = tmp_path / "models--someone--tiny-sd"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(tiny_sd, repo / "snapshots" / ("0" * 40))
    assert resolve_weights("someone/tiny-sd", cache_dir=tmp_path) == repo / "snapshots" / ("0" * 40)


def test_spec_contents(spec_dir, tiny_sd):
    spec = json.loads((spec_dir / "generator.json").read_text())
    assert spec == {
        "backend": "sd15",
        "model": str(tiny_sd),
        "weights": str(tiny_sd.resolve()),
        "class_names": CLASSES,
        "prompt_template": "a photo of a {name}",
        "negative_prompt": "cartoon, anime, painting",
        "image_size": IMAGE_SIZE,
        "scheduler": None,
    }


def test_spec_fails_early_and_writes_nothing(tmp_path, tiny_sd):
    with pytest.raises(MissingWeightsError):
        write_generator_spec(tmp_path, model=str(tmp_path / "absent"), class_names=CLASSES, image_size=256)
    with pytest.raises(ValueError, match="multiple"):
        write_generator_spec(tmp_path, model=str(tiny_sd), class_names=CLASSES, image_size=30)
    with pytest.raises(ValueError, match="scheduler"):
        write_generator_spec(tmp_path, model=str(tiny_sd), class_names=CLASSES, image_size=32, scheduler="nope")
    assert not (tmp_path / "generator.json").exists()


def test_load(generator):
    assert generator.class_names == CLASSES
    assert generator.image_size == IMAGE_SIZE
    assert generator.device == torch.device("cpu")
    assert generator.dtype == torch.float32
    assert type(generator.pipe.scheduler).__name__ == "PNDMScheduler"
    assert generator.prompt(0) == "a photo of a tench"


def test_encode_shape_and_determinism(generator, latents):
    images = torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (3, 4, LATENT_SIZE, LATENT_SIZE)
    assert latents.dtype == torch.float32 and latents.device.type == "cpu"
    # the posterior mean, not a sample: the same images give the same latents
    assert torch.equal(generator.encode(images), latents)
    # batched internally, and other sizes are resized first
    generator.batch_size = 2
    try:
        assert torch.allclose(generator.encode(images), latents, atol=1e-6)
    finally:
        del generator.batch_size
    assert generator.encode(torch.rand(2, 3, 40, 40)).shape == (2, 4, LATENT_SIZE, LATENT_SIZE)


def test_img2img_shape_and_range(generator, latents):
    out = generator.img2img(latents[:2], [0, 2], [1, 2], **STEPS)
    assert out.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError):
        generator.img2img(latents[:2], [0], [1, 2], **STEPS)
    with pytest.raises(ValueError):
        generator.img2img(latents[:1], [3], [1], **STEPS)


def test_img2img_per_image_reproducible(generator, latents):
    labels, seeds = [0, 1, 0], [11, 12, 13]
    batch = generator.img2img(latents, labels, seeds, **STEPS)
    for i in range(3):
        alone = generator.img2img(latents[i : i + 1], [labels[i]], [seeds[i]], **STEPS)
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-5, rtol=0)
    other_seed = generator.img2img(latents[:1], [0], [99], **STEPS)
    assert not torch.allclose(other_seed, batch[:1], atol=1e-3)
    # split above batch_size gives the same images
    generator.batch_size = 2
    try:
        torch.testing.assert_close(generator.img2img(latents, labels, seeds, **STEPS), batch, atol=1e-5, rtol=0)
    finally:
        del generator.batch_size


def test_scheduler_swap(tiny_sd, tmp_path, latents):
    write_generator_spec(tmp_path, model=str(tiny_sd), class_names=CLASSES, image_size=IMAGE_SIZE, scheduler="ddim")
    gen = StableDiffusionGenerator.load(tmp_path, "cpu")
    config = gen.pipe.scheduler.config
    assert type(gen.pipe.scheduler).__name__ == "DDIMScheduler"
    assert not config.clip_sample and config.steps_offset == 1 and config.beta_schedule == "scaled_linear"
    assert gen.img2img(latents[:1], [1], [5], **STEPS).shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_load_generator_dispatches_to_sd15(spec_dir):
    generators = pytest.importorskip("detdistill.generators")
    if not hasattr(generators, "load_generator"):
        pytest.skip("detdistill.generators.load_generator not there yet")
    gen = generators.load_generator(spec_dir, torch.device("cpu"))
    assert isinstance(gen, StableDiffusionGenerator) and gen.class_names == CLASSES


BATCHED = {**STEPS, "batch_size": 4}


@pytest.fixture(scope="module")
def prototypes(generator):
    images = torch.rand(3 * PROTOTYPES_PER_CLASS, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    return prototype_table(generator, images, [y for y in range(3) for _ in range(PROTOTYPES_PER_CLASS)])


def test_candidates_batched_across_images_match_per_image_calls(generator, prototypes):
    """15 candidate rows of 5 defective images in 3 classes (prompts), in chunks of 4, against one
    call per defective image: the same float images (max abs diff < 1e-5)."""
    batched = batched_candidates(generator, prototypes, BATCHED)
    reference = per_image_candidates(generator, prototypes, BATCHED)
    assert batched.shape == reference.shape == (15, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert (batched - reference).abs().max().item() < 1e-5


def test_stage_outputs_do_not_depend_on_class_grouping(tmp_path, spec_dir, prototypes, monkeypatch):
    """All classes in one job write the manifests and PNGs of one job per class (pixels equal up
    to one rounding step)."""
    assert check_groupings_agree(stage_outputs_by_grouping(tmp_path, spec_dir, prototypes, BATCHED, monkeypatch)) <= 1


def test_speed_options_load_on_cpu_as_float32(spec_dir, caplog):
    """dtype, channels_last and compile are CUDA settings: on the CPU the pipeline stays float32
    and uncompiled, says so in the log, and batch_size sets the images per pipeline call."""
    from detdistill.generators import load_generator

    with pytest.raises(ValueError, match="dtype"):
        StableDiffusionGenerator.load(spec_dir, "cpu", dtype="float8")
    with caplog.at_level("INFO", logger="detdistill"):
        gen = load_generator(spec_dir, torch.device("cpu"), batch_size=7, dtype="bfloat16", channels_last=True, compile_unet=True)
    assert gen.dtype == torch.float32 and gen.batch_size == 7
    assert type(gen.pipe.unet).__name__ == "UNet2DConditionModel"  # not compiled
    assert gen.pipe.unet.conv_in.weight.is_contiguous()
    assert "uncompiled" in caplog.text


def test_benchmark_cpu_tiny_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "bench" / "sd_img2img_speed.py"), "--tiny", "--device", "cpu", "--threads", "1",
           "--candidates", "4", "--prototypes", "2", "--batch", "3", "--reference-images", "5", "--steps", "10",
           "--repeats", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["tiny"] and result["device_type"] == "cpu"
    # CFG x (int(10 x 0.7) + 1): PNDM's PLMS schedule runs one timestep twice
    assert result["flops"]["unet_forwards_per_image"] == 2 * 8
    assert result["flops"]["unet_forward_batch1"] > 0 and result["flops"]["vae_decode_batch1"] > 0
    assert result["ours"]["images_per_s"] > 0 and result["reference"]["images_per_s"] > 0
    # 2 prototypes x 4 candidates in chunks of 3 (one chunk straddles the prototypes)
    assert {k: result["ours"][k] for k in ("batch", "prototypes", "images_per_pass", "calls_per_pass")} == {
        "batch": 3, "prototypes": 2, "images_per_pass": 8, "calls_per_pass": 3}
    # same weights and seeds, fp32 on both paths: the batched path makes the reference's images
    # (the first 5: all of the first prototype's candidates and one of the second's)
    assert result["reference"]["max_abs_diff_vs_ours"] < 1e-4
    assert result["peak_share"] is None and "speed-up" in proc.stdout
