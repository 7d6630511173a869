"""Train, evaluate, save and load classifiers on small in-memory uint8 image sets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from detdistill.io import save_safetensors
from detdistill.models import build_model

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("multistep", "cosine", "constant")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd" | "adam" | "adamw"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "multistep"  # x0.2 at 2/3 and 5/6 of epochs (Minimax/IDC) | "cosine" | "constant"
    cutmix_alpha: float = 1.0  # 0 disables; lambda ~ Beta(alpha, alpha)
    cutmix_prob: float = 1.0  # probability that a batch gets CutMix
    crop_scale: tuple[float, float] | None = (0.5, 1.0)  # RandomResizedCrop scale; None/False/[] disables
    crop_size: int | None = None  # RandomResizedCrop output size (Minimax: 224 from 256); None keeps the input size
    color_jitter: float = 0.0  # ColorJitter brightness/contrast/saturation (Minimax: 0.4); 0 disables
    flip: bool = True  # horizontal flip (False for digits)
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer={self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule={self.schedule!r}; choose one of {SCHEDULES}")
        # YAML gives lists; from_dict drops None, so False / [] also mean "no crop".
        self.crop_scale = tuple(float(s) for s in self.crop_scale) if self.crop_scale else None
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("train.epochs and train.batch_size must be >= 1")

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        """Build from a config mapping; None values keep the default, unknown keys raise."""
        d = {k: v for k, v in (d or {}).items() if v is not None}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown train config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    # Stepped once per epoch.
    if cfg.schedule == "multistep":
        # Milestone 0 would decay the lr before the first epoch (epochs < 2): drop it.
        milestones = [m for m in (2 * cfg.epochs // 3, 5 * cfg.epochs // 6) if m > 0]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.2)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _make_augment(image_size: int, cfg: TrainConfig):
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
    # Per sample so every image gets its own crop/flip; on uint8 CPU tensors (cheap, before transfer).
    return lambda batch: torch.stack([aug(img) for img in batch])


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                     device, desc: str = "train", log: Callable[[str], None] | None = None) -> list[dict]:
    """Train `model` in place on uint8 images (N,3,H,W) and int64 labels (N,); return per-epoch history."""
    from torchvision.transforms import v2

    if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need images (N,3,H,W) and labels (N,) with N>0; got {tuple(images.shape)}, "
                         f"{tuple(labels.shape)}")
    device = torch.device(device)
    images, labels = images.cpu(), labels.cpu().long()
    n = len(images)
    batch_size = min(cfg.batch_size, n)  # tiny distilled sets: one full batch
    num_classes = model.classifier.out_features
    augment = _make_augment(images.shape[-1], cfg)
    cutmix = v2.CutMix(num_classes=num_classes, alpha=cfg.cutmix_alpha) if cfg.cutmix_alpha > 0 else None

    model.to(device).train()
    opt = _make_optimizer(model, cfg)
    sched = _make_scheduler(opt, cfg)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    log_every = max(1, cfg.epochs // 20)
    history = []
    # Augmentation and CutMix draw from the global CPU RNG: seed it, but restore the caller's state after.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        bar = tqdm(range(cfg.epochs), desc=desc, mininterval=5)
        for epoch in bar:
            lr = opt.param_groups[0]["lr"]
            total, seen = 0.0, 0
            for idx in torch.randperm(n, generator=shuffle).split(batch_size):
                x, y = images[idx], labels[idx]
                if augment is not None:
                    x = augment(x)
                x, y = _to_float(x.to(device, non_blocking=True)), y.to(device)
                if cutmix is not None and torch.rand(()).item() < cfg.cutmix_prob:
                    x, y = cutmix(x, y)  # y becomes soft (B, num_classes)
                loss = F.cross_entropy(model(x), y)  # accepts class indices or probabilities
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                seen += len(idx)
            sched.step()
            record = {"epoch": epoch + 1, "loss": total / seen, "lr": lr}
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.3g}")
            if log is not None and ((epoch + 1) % log_every == 0 or epoch + 1 == cfg.epochs):
                log(f"{desc} epoch {epoch + 1}/{cfg.epochs} loss {record['loss']:.4f} lr {lr:.4g}")
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Logits, softmax probabilities and penultimate features (CPU float32) for uint8 or [0,1] images."""
    if len(images) == 0:
        raise ValueError("predict needs at least one image")
    was_training = model.training
    model.to(device).eval()
    out = {"logits": [], "probs": [], "features": []}
    for chunk in images.split(batch_size):
        feats = model.features(_to_float(chunk.to(device)))
        logits = model.classifier(feats)
        out["features"].append(feats.float().cpu())
        out["logits"].append(logits.float().cpu())
        out["probs"].append(logits.float().softmax(dim=1).cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device) -> float:
    preds = predict(model, images, device)["logits"].argmax(dim=1)
    return (preds == labels.cpu()).float().mean().item()


BUILD_KEYS = ("name", "num_classes", "image_size", "width")


def save_model(model: nn.Module, path, meta: dict | None = None) -> None:
    """Atomically write the state_dict as safetensors; metadata holds the build_model arguments
    (from `model.build_args`, else from `meta`) and `meta`, each JSON-encoded (values must be strings)."""
    meta = dict(meta or {})
    build_args = getattr(model, "build_args", None) or {k: meta[k] for k in BUILD_KEYS if k in meta}
    missing = [k for k in BUILD_KEYS if k not in build_args]
    if missing:
        raise ValueError(f"cannot save model to {path}: build arguments {missing} unknown "
                         "(build it with detdistill.models.build_model or pass them in meta)")
    metadata = {"build_args": json.dumps({k: build_args[k] for k in BUILD_KEYS}),
                "meta": json.dumps(meta, default=str)}
    save_safetensors(model.state_dict(), path, metadata=metadata)


def read_model_meta(path) -> dict:
    """Metadata of a saved model: {"build_args": {...}, "meta": {...}}."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    if "build_args" not in raw:
        raise ValueError(f"{path} has no build_args metadata; was it written by detdistill.train.save_model?")
    return {k: json.loads(v) for k, v in raw.items() if k in ("build_args", "meta")}


def load_model(path, device) -> nn.Module:
    """Rebuild the architecture from the file's metadata and load its weights, in eval mode."""
    from safetensors.torch import load_file

    model = build_model(**read_model_meta(path)["build_args"])
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()
