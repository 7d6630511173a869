"""The training loop detdistill used before its device engine, kept as the yardstick the engine is
tested (tests/test_engine.py: same accuracy within seed noise) and timed against
(bench/engine_throughput.py). Not used by the workflow.

It augments on the CPU, one image at a time (torchvision v2 RandomResizedCrop, ColorJitter, flip
on uint8 tensors), moves each batch to the device, and trains one model at a time in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detdistill.train import TrainConfig, _make_optimizer, _make_scheduler, to_float


def _per_image_augment(image_size: int, cfg: TrainConfig):
    from torchvision.transforms import v2

    steps = []
    out_size = cfg.crop_size or image_size
    if cfg.crop_scale:
        steps.append(v2.RandomResizedCrop(out_size, scale=cfg.crop_scale, antialias=True))
    elif out_size != image_size:
        steps.append(v2.CenterCrop(out_size))
    if cfg.color_jitter:
        steps.append(v2.ColorJitter(cfg.color_jitter, cfg.color_jitter, cfg.color_jitter))
    if cfg.flip:
        steps.append(v2.RandomHorizontalFlip())
    if not steps:
        return None
    aug = v2.Compose(steps)
    return lambda batch: torch.stack([aug(img) for img in batch])


def train_classifier_reference(model, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, device) -> None:
    """Train `model` in place on uint8 images (N,3,H,W) with the pre-engine loop."""
    from torchvision.transforms import v2

    device = torch.device(device)
    images, labels = images.cpu(), labels.cpu().long()
    n = len(images)
    batch_size = min(cfg.batch_size, n)
    num_classes = model.classifier.out_features
    augment = _per_image_augment(images.shape[-1], cfg)
    cutmix = v2.CutMix(num_classes=num_classes, alpha=cfg.cutmix_alpha) if cfg.cutmix_alpha > 0 else None
    model.to(device).train()
    opt = _make_optimizer(model.parameters(), cfg)
    sched = _make_scheduler(opt, cfg)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for _ in range(cfg.epochs):
            for idx in torch.randperm(n, generator=shuffle).split(batch_size):
                x, y = images[idx], labels[idx]
                if augment is not None:
                    x = augment(x)
                x, y = to_float(x.to(device)), y.to(device)
                if cutmix is not None and torch.rand(()).item() < cfg.cutmix_prob:
                    x, y = cutmix(x, y)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
    model.eval()
