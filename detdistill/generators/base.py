"""The interfaces of the generator backends (embedded small LDM, Stable Diffusion v1.5): the
`GeneratorBackend` component a backend registers in `BACKENDS` (what the pipeline asks of it: its
check before the workflow runs, preparing a checkpoint, loading it, the files of its cache key),
and the `Generator` it loads.

Latents are always *scaled* latents (VAE posterior mean times `vae.config.scaling_factor`), so
prototypes computed from `encode` can be fed back to `img2img` as they are.
Images are float tensors (N, 3, H, W) in [0, 1].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch

from ..registry import Registry

LATENT_CHANNELS = 4


def check_img2img_args(latents: torch.Tensor, labels: Sequence[int], seeds: Sequence[int], num_classes: int):
    """One label and one seed per 4-channel latent, labels in range; returns them as int lists."""
    labels = [int(y) for y in labels]
    seeds = [int(s) for s in seeds]
    if not (len(latents) == len(labels) == len(seeds)):
        raise ValueError(f"img2img needs one label and one seed per latent: {len(latents)}, {len(labels)}, {len(seeds)}")
    if any(y < 0 or y >= num_classes for y in labels):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if latents.ndim != 4 or latents.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"expected scaled latents (N, {LATENT_CHANNELS}, h, w), got {tuple(latents.shape)}")
    return labels, seeds


def run_img2img(pipe, latents, prompt_embeds, negative_prompt_embeds, seeds, *, strength, guidance, steps):
    """One stock `StableDiffusionImg2ImgPipeline` call on scaled latents, shared by both backends
    and the benchmark.

    One CPU `torch.Generator` per image: diffusers draws each image's noise from its own generator
    (so an image does not depend on its batch), and CPU generators give the same noise on any device.
    """
    device, dtype = pipe.unet.device, pipe.unet.dtype
    return pipe(
        image=latents.to(device, dtype),
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_prompt_embeds,
        strength=float(strength),
        guidance_scale=float(guidance),
        num_inference_steps=int(steps),
        generator=[torch.Generator().manual_seed(int(s)) for s in seeds],
        output_type="pt",
    ).images


class Generator(ABC):
    #: class names in label order (label i <-> class_names[i])
    class_names: list[str]
    #: pixel size of generated images (square)
    image_size: int
    device: torch.device
    #: images per pipeline call (`load_generator` sets it from `synthesis.batch_size`)
    batch_size: int
    #: the stock `StableDiffusionImg2ImgPipeline` that `img2img` runs
    pipe: object

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled VAE posterior means of images (N,3,H,W) in [0,1] -> (N,C,h,w)."""

    @abstractmethod
    def condition(self, labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) `prompt_embeds` / `negative_prompt_embeds` of a batch of labels."""

    @torch.no_grad()
    def img2img(
        self,
        latents: torch.Tensor,
        labels: Sequence[int],
        seeds: Sequence[int],
        *,
        strength: float,
        guidance: float,
        steps: int,
    ) -> torch.Tensor:
        """Noise each scaled latent to `strength`, denoise conditioned on its label with
        classifier-free guidance, decode, `batch_size` images per pipeline call. One
        `torch.Generator` per image seeded from `seeds`, so an image does not depend on the batch
        it was made in. Returns (N,3,H,W) in [0,1] on CPU."""
        labels, seeds = check_img2img_args(latents, labels, seeds, len(self.class_names))
        out = []
        for i in range(0, len(labels), self.batch_size):
            j = i + self.batch_size
            cond, uncond = self.condition(labels[i:j])
            images = run_img2img(self.pipe, latents[i:j], cond, uncond, seeds[i:j], strength=strength, guidance=guidance, steps=steps)
            out.append(images.float().cpu())
        if not out:
            return torch.empty((0, 3, self.image_size, self.image_size))
        return torch.cat(out)


class GeneratorNotReady(Exception):
    """A backend's check before the workflow runs failed; the message says what is missing and
    how to fix it."""


def checkpoint_files(folder) -> dict[str, Path]:
    """Every file of a checkpoint folder, by its path inside the folder."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


class GeneratorBackend(ABC):
    """One generator backend: the `name` a dataset's `generator.backend` and a checkpoint's
    `generator.json` ("backend") give, and what the pipeline asks of it. Register a subclass with
    `@BACKENDS.register`."""

    name: ClassVar[str]
    #: the config/schema.yaml section that holds the settings it reads and their defaults
    schema_section: ClassVar[str]

    @abstractmethod
    def check(self, generator_cfg: dict) -> None:
        """Run while the workflow builds its DAG, before any job: raise GeneratorNotReady when
        `prepare` cannot succeed (missing weights), so a run does not stop hours in."""

    @abstractmethod
    def prepare(self, *, train_manifest, source_cfg: dict, image_size: int, generator_cfg: dict, out_dir) -> None:
        """Make the checkpoint folder `out_dir` (its `generator.json` names the backend) from the
        dataset's train split (`train_manifest`, a manifest table) and `generator` settings."""

    @abstractmethod
    def load(self, path, device, **speed_options) -> Generator:
        """The generator of checkpoint folder `path`. `speed_options` (`dtype`, `channels_last`,
        `compile_unet`, from `synthesis`): a backend applies those it has and ignores the others."""

    @abstractmethod
    def key_files(self, folder: Path, meta: dict) -> dict[str, Path]:
        """Every file that decides the images of checkpoint `folder` (`meta`: its generator.json),
        by a stable name: the image cache's key hashes them, so a file left out here would let the
        cache return images of other weights. Usually `checkpoint_files(folder)`, plus any weights
        the checkpoint loads from elsewhere."""


BACKENDS: Registry[GeneratorBackend] = Registry("generator backend", "generator.backend")
