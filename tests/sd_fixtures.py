"""A tiny Stable-Diffusion-shaped pipeline saved like the real model, for offline tests.

Same components and folder layout as stable-diffusion-v1-5 (model_index.json, unet/, vae/,
text_encoder/, tokenizer/, scheduler/), random weights, a few hundred kB on disk. The configs and
the builder are shared with the benchmarks (`detdistill.testing.sd_shapes`).
"""

from __future__ import annotations

from pathlib import Path

from detdistill.testing.sd_shapes import TEXT_ENCODER_TINY, UNET_TINY, VAE_TINY, save_sd_pipeline, vae_factor

IMAGE_SIZE = VAE_TINY["sample_size"]  # VAE with 3 blocks: 32 px -> 8x8 latents
LATENT_SIZE = IMAGE_SIZE // vae_factor(VAE_TINY)


def make_tiny_sd(folder: Path) -> Path:
    """Build, seed and `save_pretrained` a tiny SD-shaped img2img pipeline into `folder`."""
    return save_sd_pipeline(folder, UNET_TINY, VAE_TINY, TEXT_ENCODER_TINY)


def write_class_images(root: Path, counts: dict, classes: list[str], *, size=(40, 64), suffix=".JPEG") -> Path:
    """root/<split>/<class>/*: per class a colour (its channel at 200) with noise, seeded; `counts`
    maps split -> images per class; `size` (low, high) draws each image's sides, an int fixes them."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in counts.items():
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = (size, size) if isinstance(size, int) else rng.integers(*size, size=2)
                base = np.zeros((h, w, 3)) + 60
                base[..., label] = 200
                pixels = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i:04d}{suffix}", **({"quality": 90} if suffix == ".JPEG" else {}))
    return root
