"""The training loop detdistill used before its device engine, kept as the yardstick the engine is
tested (tests/test_engine.py: the same optimizer steps without augmentation, the same accuracy
within seed noise with it) and timed against (bench/engine_throughput.py). Not used by the workflow.

It augments on the CPU, one image at a time (torchvision v2 RandomResizedCrop, ColorJitter, flip
on uint8 tensors), moves each batch to the device, and trains one model at a time in fp32.
Its optimizer and learning-rate schedule come straight from torch.optim, written from the
protocol config/schema.yaml describes, and nothing of detdistill's training code: a bug in the
engine's optimizer or schedule shows as a difference from this loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _per_image_augment(image_size: int, cfg):
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


def protocol_optimizer(params, cfg) -> torch.optim.Optimizer:
    """`train.optimizer` with its lr, momentum (SGD only) and weight decay."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def protocol_schedule(opt: torch.optim.Optimizer, schedule: str, epochs: int):
    """`train.schedule`, stepped once per epoch: multistep x0.2 at 2/3 and 5/6 of the epochs
    (rounded down, as Minimax's train code does), cosine to zero over the epochs, half_cosine
    0.5 (1 + cos(pi e / 2E)) (RDED), constant."""
    if schedule == "multistep":
        # a milestone 0 (under 2 epochs) would decay the lr before the first epoch: none then
        milestones = [m for m in (2 * epochs // 3, 5 * epochs // 6) if m > 0]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.2)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if schedule == "half_cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 * (1 + math.cos(math.pi * e / (2 * epochs))))
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"unknown schedule {schedule!r}")


def train_classifier_reference(model, images: torch.Tensor, labels: torch.Tensor, cfg, device) -> list[dict]:
    """Train `model` in place on uint8 images (N,3,H,W) with the pre-engine loop, reading the
    settings from `cfg` (a detdistill.train.TrainConfig or anything with its fields); return the
    per-epoch history as the engine does: epoch, mean loss over the images, the epoch's lr."""
    from torchvision.transforms import v2

    device = torch.device(device)
    images, labels = images.cpu(), labels.cpu().long()
    n = len(images)
    batch_size = min(cfg.batch_size, n)
    num_classes = model.classifier.out_features
    augment = _per_image_augment(images.shape[-1], cfg)
    cutmix = v2.CutMix(num_classes=num_classes, alpha=cfg.cutmix_alpha) if cfg.cutmix_alpha > 0 else None
    model.to(device).train()
    dtype = next(model.parameters()).dtype  # float32, or float64 where a test trains in it
    opt = protocol_optimizer(model.parameters(), cfg)
    sched = protocol_schedule(opt, cfg.schedule, cfg.epochs)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    history = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for epoch in range(cfg.epochs):
            lr, total = opt.param_groups[0]["lr"], 0.0
            for idx in torch.randperm(n, generator=shuffle).split(batch_size):
                x, y = images[idx], labels[idx]
                if augment is not None:
                    x = augment(x)
                x, y = x.to(device, dtype) / 255, y.to(device)
                if cutmix is not None and torch.rand(()).item() < cfg.cutmix_prob:
                    x, y = cutmix(x, y)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            history.append({"epoch": epoch + 1, "loss": total / n, "lr": lr})
    model.eval()
    return history
