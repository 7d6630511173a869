"""Stable-Diffusion-v1.5-shaped pipelines with random weights: the published configs and a builder.

One place for the architecture figures that the speed benchmark (`bench/sd_img2img_speed.py`), the
workflow rehearsal (`bench/rehearsal.py`) and the offline tests (`tests/sd_fixtures.py`) use, so a
random-weight "SD v1.5" is the same model everywhere. Speed does not depend on the weights' values,
so nothing is downloaded. The tokenizer is character-level (a hand-written CLIP BPE vocabulary
with no merges): the real one's 49,408-entry vocabulary is part of the weights download, and the
text encoder runs once per prompt, so its tokens do not matter for speed.
"""

from __future__ import annotations

import json
import logging
import string
import tempfile
from pathlib import Path

import torch

from .fake_data import cached_build

log = logging.getLogger(__name__)

#: unet/config.json of stable-diffusion-v1-5 (860M parameters)
UNET_SD15 = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
#: vae/config.json of stable-diffusion-v1-5 (84M parameters)
VAE_SD15 = {
    "sample_size": 512,
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}
#: text_encoder/config.json of stable-diffusion-v1-5 (CLIP ViT-L/14's text tower, 123M parameters)
TEXT_ENCODER_SD15 = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
#: scheduler/scheduler_config.json of stable-diffusion-v1-5
SCHEDULER_SD15 = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
#: tokens of a CLIP prompt (the pipeline pads and truncates to this)
TEXT_TOKENS = 77

#: a test size that runs in seconds on a CPU: 32 px images, 8x8 latents, 32-wide text embeddings
UNET_TINY = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
VAE_TINY = {
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [8, 16, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    # at construction: set later with register_to_config it reverts on from_config
    "scaling_factor": 0.18215,
}
TEXT_ENCODER_TINY = {
    "vocab_size": 1000,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": TEXT_TOKENS,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 1,
}


def vae_factor(vae_cfg: dict) -> int:
    """Pixels per latent cell: each VAE block but the last halves the image."""
    return 2 ** (len(vae_cfg["block_out_channels"]) - 1)


def write_char_tokenizer(folder: Path) -> None:
    """Character-level CLIP BPE vocabulary: no merges, so every word splits into letters, the last
    one carrying `</w>`; anything else (digits, punctuation) maps to the unknown token."""
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    tokens += list(string.ascii_lowercase) + [c + "</w>" for c in string.ascii_lowercase]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def build_sd_pipeline(unet_cfg: dict, vae_cfg: dict, text_cfg: dict | None = None, *, device="cpu", seed: int = 0):
    """An fp32 `StableDiffusionImg2ImgPipeline` with random weights, created on `device`.

    Without `text_cfg` it has no text encoder and tokenizer (callers then pass prompt embeddings);
    with it, a CLIP text encoder of that config and the character-level tokenizer.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg).eval()
        vae = AutoencoderKL(**vae_cfg).eval()
        text_encoder = tokenizer = None
        if text_cfg is not None:
            from transformers import CLIPTextConfig, CLIPTextModel

            text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg)).eval()
    if text_cfg is not None:
        from transformers import CLIPTokenizer

        with tempfile.TemporaryDirectory() as tok_dir:
            write_char_tokenizer(Path(tok_dir))
            # model_max_length: without it truncation to the tokenizer's max length overflows
            tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=TEXT_TOKENS)
    return StableDiffusionImg2ImgPipeline(
        vae=vae,
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(**SCHEDULER_SD15),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_sd_pipeline(
    folder, unet_cfg: dict, vae_cfg: dict, text_cfg: dict, *, dtype: torch.dtype | None = None, device="cpu", seed: int = 0
) -> Path:
    """Build a random-weight pipeline and `save_pretrained` it into `folder`, laid out like the
    published model (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).
    `dtype` (e.g. fp16) halves the files; the workflow loads them in its own dtype."""
    folder = Path(folder)
    pipe = build_sd_pipeline(unet_cfg, vae_cfg, text_cfg, device=device, seed=seed)
    if dtype not in (None, torch.float32):
        pipe = pipe.to(dtype=dtype)
    pipe.save_pretrained(folder)
    return folder


def build_sd15_shaped(folder: Path, tiny: bool) -> dict:
    """SD-v1.5-shaped random weights as a local diffusers folder (fp16, about 2.1 GB), or the tiny
    test model (fp32); skipped when `folder` holds the same build. Returns the build's parameters."""
    import gc

    import diffusers

    configs = (UNET_TINY, VAE_TINY, TEXT_ENCODER_TINY) if tiny else (UNET_SD15, VAE_SD15, TEXT_ENCODER_SD15)
    dtype = "float32" if tiny else "float16"
    params = {"unet": configs[0], "vae": configs[1], "text_encoder": configs[2], "dtype": dtype,
              "tokenizer": "character-level CLIP BPE vocabulary (detdistill.testing.sd_shapes)", "weights": "random, seed 0"}

    def build(staging: Path) -> None:
        # random initialisation of 1.1 B parameters is much faster on the GPU
        device = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("generator: building %s random weights on %s into %s", "tiny" if tiny else "SD-v1.5-shaped", device, folder)
        # the cast's "modules that should be kept in float32: []" notice says nothing here
        diffusers.utils.logging.set_verbosity_error()
        save_sd_pipeline(staging, *configs, dtype=getattr(torch, dtype), device=device)
        if device == "cuda":  # hand the weights' memory back before the workflow's jobs start
            gc.collect()
            torch.cuda.empty_cache()

    return cached_build(folder, params, build, "generator")
