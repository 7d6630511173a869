"""The one interface every generator backend implements (embedded small LDM, Stable Diffusion v1.5).

Latents are always *scaled* latents (VAE posterior mean times `vae.config.scaling_factor`), so
prototypes computed from `encode` can be fed back to `img2img` as they are.
Images are float tensors (N, 3, H, W) in [0, 1].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch


class Generator(ABC):
    #: class names in label order (label i <-> class_names[i])
    class_names: list[str]
    #: pixel size of generated images (square)
    image_size: int
    device: torch.device

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled VAE posterior means of images (N,3,H,W) in [0,1] -> (N,C,h,w)."""

    @abstractmethod
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
        classifier-free guidance, decode. One `torch.Generator` per image seeded from `seeds`, so
        an image does not depend on the batch it was made in. Returns (N,3,H,W) in [0,1] on CPU."""
