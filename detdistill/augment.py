"""Training augmentation applied per sample but batched on the images' device (kornia).

The configured Minimax-style pipeline (RandomResizedCrop with scale, ColorJitter, horizontal flip)
draws its own parameters for every image, like torchvision's per-image transforms, but runs as a
few batched kernels on whatever device holds the batch: no per-image Python loop, no CPU round
trip. Parameters are drawn from the global CPU RNG (kornia samples them on the CPU), which the
training engine swaps per run so every run keeps its own augmentation draws.
CutMix (one box and lambda per batch, as in the CutMix paper and Minimax) stays torchvision's
`v2.CutMix`, which already works on batched device tensors.
"""

from __future__ import annotations

import torch


def build_augment(image_size: int, *, crop_scale, crop_size, color_jitter: float, flip: bool):
    """A callable float (B,3,H,W) in [0,1] -> float (B,3,S,S) in [0,1], or None when the config
    asks for no augmentation and no resize."""
    import kornia.augmentation as K

    steps = []
    out_size = crop_size or image_size
    if crop_scale:
        # "resample" crops every image with one batched affine warp; the default "slice" mode loops
        # over the batch in Python.
        steps.append(K.RandomResizedCrop((out_size, out_size), scale=tuple(crop_scale), cropping_mode="resample"))
    elif out_size != image_size:
        steps.append(K.CenterCrop(out_size))
    if color_jitter:
        steps.append(K.ColorJitter(color_jitter, color_jitter, color_jitter, p=1.0))
    if flip:
        steps.append(K.RandomHorizontalFlip())
    if not steps:
        return None
    pipeline = K.AugmentationSequential(*steps)

    def augment(batch: torch.Tensor) -> torch.Tensor:
        # ColorJitter can leave [0, 1] by rounding; the models expect [0, 1] inputs
        return pipeline(batch).clamp_(0, 1)

    return augment
