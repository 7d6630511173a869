"""A tiny Stable-Diffusion-shaped pipeline saved like the real model, for offline tests.

Same components and folder layout as stable-diffusion-v1-5 (model_index.json, unet/, vae/,
text_encoder/, tokenizer/, scheduler/), random weights, a few hundred kB on disk.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import torch

#: SD1.5's own scheduler settings (scheduler/scheduler_config.json of the published model)
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}

IMAGE_SIZE = 32  # VAE with 3 blocks: 32 px -> 8x8 latents
LATENT_SIZE = 8
TEXT_DIM = 32


def _tokenizer_files(folder: Path) -> None:
    """Character-level CLIP BPE vocabulary: no merges, so every word splits into letters, the last
    one carrying `</w>`; anything else (digits, punctuation) maps to the unknown token."""
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    tokens += list(string.ascii_lowercase) + [c + "</w>" for c in string.ascii_lowercase]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def make_tiny_sd(folder: Path) -> Path:
    """Build, seed and `save_pretrained` a tiny SD-shaped img2img pipeline into `folder`."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        # at construction: set later with register_to_config it reverts on from_config
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=1000,
            hidden_size=TEXT_DIM,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    with tempfile.TemporaryDirectory() as tok_dir:
        _tokenizer_files(Path(tok_dir))
        # model_max_length=77: without it truncation to the tokenizer's max length overflows
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=77)
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae,
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder
