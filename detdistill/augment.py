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

# AlexNet's PCA lighting ("fancy PCA") as Minimax (misc/utils.py, `Lighting`) and IDC use it: the
# eigenvalues and eigenvectors of ImageNet's RGB pixel covariance, from the AlexNet paper's code.
# No maintained augmentation library ships this transform, so it is written here (batched).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))


def lighting(batch: torch.Tensor, alphastd: float) -> torch.Tensor:
    """Add to every pixel of image i the RGB offset eigvec @ (alpha_i * eigval), alpha_i ~ N(0,
    alphastd) per image and eigen-direction (drawn from the global CPU RNG, like kornia's draws)."""
    alpha = torch.randn(len(batch), 3) * alphastd
    eigval = torch.tensor(IMAGENET_EIGVAL)
    eigvec = torch.tensor(IMAGENET_EIGVEC)
    offset = (alpha * eigval) @ eigvec.T  # (B, 3): row i = sum_j eigvec[:, j] * alpha_ij * eigval_j
    # non_blocking: a blocking copy would wait for every kernel queued on the device (see train.py)
    return batch + offset.to(batch.device, batch.dtype, non_blocking=True)[:, :, None, None]


def build_augment(image_size: int, *, crop_scale, crop_size, color_jitter: float, flip: bool, lighting_std: float = 0.0):
    """A callable float (B,3,H,W) in [0,1] -> float (B,3,S,S) (in [0,1] without lighting), or None when the config
    asks for no augmentation and no resize. `lighting_std` > 0 adds PCA lighting after the colour
    jitter (Minimax: 0.1)."""
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
    if not steps and not lighting_std:
        return None

    def augment(batch: torch.Tensor) -> torch.Tensor:
        if steps:
            # The modules in turn, not through K.AugmentationSequential: the same draws and images
            # (tested), without the container's bookkeeping (558 -> 508 tensor operations per
            # batch at 32 px, each a kernel launch on a GPU, where an IPC-10 step is host-bound)
            for step in steps:
                batch = step(batch)
            batch = batch.clamp_(0, 1)  # ColorJitter can leave [0, 1] by rounding
        if lighting_std:
            # not clamped, as in Minimax: lighting shifts colours by design (by ~0.02 at std 0.1)
            batch = lighting(batch, lighting_std)
        return batch

    return augment
