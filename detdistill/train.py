"""Train, evaluate, save and load classifiers on in-memory uint8 image sets.

`train_classifiers` is the one training engine of the detector, the judge and every evaluation:
data resident on the device, augmentation batched there, several seeds of a model at once."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from detdistill import schema
from detdistill.io import save_safetensors
from detdistill.models import build_model

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("multistep", "cosine", "half_cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")


#: config/schema.yaml's defaults of `$defs/train`, the one place they are written
_DEFAULTS = schema.defaults("train")
#: train.compile -> torch.compile's mode (None: not compiled). "cuda-graphs" replays the compiled
#: forward and backward as CUDA graphs: an IPC-10 step (batch 64) is bound by kernel launches from
#: the host, and on an H200 this took ResNet-18 from 25.6 to 14.3 ms per step and the ConvNet from
#: 20.0 to 12.4, where plain compilation changed nothing (bench/measurements/engine_compiled_nvidia-h200.md)
COMPILE_MODES = {False: None, True: "default", "cuda-graphs": "reduce-overhead"}
#: train.compile as a command-line word (YAML's false/true as written) -> its value
COMPILE_WORDS = {str(value).lower(): value for value in COMPILE_MODES}


@dataclass
class TrainConfig:
    """Classifier training settings; config/schema.yaml (`$defs/train`) describes each and holds
    its default (tests/test_engine.py checks the fields are the schema's keys)."""

    epochs: int = _DEFAULTS["epochs"]
    batch_size: int = _DEFAULTS["batch_size"]
    optimizer: str = _DEFAULTS["optimizer"]  # one of OPTIMIZERS
    lr: float = _DEFAULTS["lr"]
    momentum: float = _DEFAULTS["momentum"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    schedule: str = _DEFAULTS["schedule"]  # multistep: x0.2 at 2/3 and 5/6 of the epochs (Minimax/IDC)
    cutmix_alpha: float = _DEFAULTS["cutmix_alpha"]  # 0 disables; lambda ~ Beta(alpha, alpha)
    cutmix_prob: float = _DEFAULTS["cutmix_prob"]
    # RandomResizedCrop scale; None/False/[] disables (a factory: the schema's default is a list)
    crop_scale: tuple[float, float] | None = field(default_factory=lambda: _DEFAULTS["crop_scale"])
    crop_size: int | None = _DEFAULTS["crop_size"]  # None keeps the input size
    color_jitter: float = _DEFAULTS["color_jitter"]  # 0 disables
    lighting: float = _DEFAULTS["lighting"]  # PCA lighting std; 0 disables
    flip: bool = _DEFAULTS["flip"]
    seed: int = _DEFAULTS["seed"]
    precision: str = _DEFAULTS["precision"]  # auto: bf16 autocast on CUDA, fp32 on the CPU
    compile: bool | str = _DEFAULTS["compile"]  # one of COMPILE_MODES

    def __post_init__(self):
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"train.compile={self.compile!r}; choose one of {list(COMPILE_MODES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer={self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision={self.precision!r}; choose one of {PRECISIONS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule={self.schedule!r}; choose one of {SCHEDULES}")
        # YAML gives lists; from_dict drops None, so False / [] also mean "no crop".
        self.crop_scale = tuple(float(s) for s in self.crop_scale) if self.crop_scale else None
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("train.epochs and train.batch_size must be >= 1")

    @classmethod
    def from_dict(cls, d: dict | None) -> TrainConfig:
        """Build from a config mapping; None values keep the default, unknown keys raise."""
        d = {k: v for k, v in (d or {}).items() if v is not None}
        return cls(**schema.with_defaults("train", d, "train"))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]; float images are returned as float32."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def _make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    # SGD, Adam and AdamW update every element independently, so one optimizer over stacked
    # (runs, ...) parameters is exactly one optimizer per run.
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
    if cfg.schedule == "half_cosine":
        # RDED's student schedule (validation/main.py): 0.5 (1 + cos(pi e / E / 2)), from the
        # base lr down to half of it at the last epoch, not to zero
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 * (1 + math.cos(math.pi * e / cfg.epochs / 2)))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA unless fp32 is asked for; the CPU trains in fp32 unless bf16 is asked
    for (CPUs without bf16 units gain nothing from it: it exists to test the autocast path)."""
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def use_stacking(stack: str | bool, device: torch.device, runs: int) -> bool:
    """`auto` runs the seeds in turn on every device, as measured faster: on the CPU stacking was
    5-25% slower for ResNetAP-10 and ResNet-18 (bench/engine_throughput.py), and on an H200
    (bench/measurements/gpu_nvidia-h200.md, IPC 10 at 224 px, 3 seeds) 11% slower for
    ResNetAP-10 and ConvNet: the vmapped step costs about as much per run as a run's own step.
    `on` stacks anyway (2 or more runs)."""
    if runs < 2 or stack in (False, "off"):
        return False
    if stack in (True, "on"):
        return True
    if stack != "auto":
        raise ValueError(f"stack={stack!r}; choose auto, on or off")
    return False


def prefers_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Channels-last on CUDA (tensor-core convolutions); on the CPU only for models without
    GroupNorm (instance norm): measured there, ResNet-18 (batch norm) trains 15-25% faster in
    channels-last and the instance-norm ConvNet / ResNetAP-10 20-40% slower."""
    return device.type == "cuda" or not any(isinstance(m, nn.GroupNorm) for m in model.modules())


class _Run:
    """One training run's own randomness: data order and augmentation / CutMix draws."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.order = torch.Generator().manual_seed(self.seed)
        # the CPU RNG state the run's augmentation draws from (kornia and CutMix sample on the CPU)
        self.rng_state = torch.Generator().manual_seed(self.seed).get_state()
        self.history: list[dict] = []


def _compiled(forward: Callable, compile_model: bool | str) -> Callable:
    """`forward` through torch.compile in the mode `train.compile` names, or as it is."""
    mode = COMPILE_MODES[compile_model]
    return forward if mode is None else torch.compile(forward, mode=mode)


class _ModuleStep:
    """Forward of one run: the model itself (channels-last where it pays, optionally compiled)."""

    def __init__(self, model: nn.Module, device: torch.device, compile_model: bool | str):
        self.model = model.to(device).train()
        self.channels_last = prefers_channels_last(model, device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.forward = _compiled(self.model, compile_model)

    def parameters(self):
        return list(self.model.parameters())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # x: (1, B, 3, H, W) -> (1, B, K)
        x = x[0]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.forward(x)[None]

    def finish(self) -> None:
        self.model.eval()

    def resume(self) -> None:
        """Back to training after `finish` (a mid-training evaluation)."""
        self.model.train()


def _batch_norm_in_float32(model: nn.Module) -> None:
    """Batch norm of `model` computed in float32 and cast back to its input's dtype. Under vmap
    the CUDA batch-norm kernels take a bf16 input with float32 running statistics forward but
    not backward ("Expected running_mean to have type BFloat16 but got Float", seen on an H200
    with ResNet-18 stacked under bf16 autocast); a float32 input is what autocast would pick for a
    normalisation anyway. A no-op for float32 inputs: the fp32 path is unchanged."""

    def float32_forward(module_forward, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in (torch.float16, torch.bfloat16):
            return module_forward(x)
        return module_forward(x.float()).to(x.dtype)

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.forward = functools.partial(float32_forward, module.forward)


class _StackedStep:
    """Forward of S runs of one architecture as one batched computation: the runs' parameters and
    buffers are stacked along a new first dimension and the model is applied with
    `torch.func.vmap`, so a step over S small batches is one set of large kernels (a grouped
    convolution) instead of S sets of small ones. Batch-norm running statistics are stacked too,
    so each run keeps its own."""

    def __init__(self, models: list[nn.Module], device: torch.device, compile_model: bool | str):
        import copy

        from torch.func import functional_call, stack_module_state, vmap

        self.models = [m.to(device).train() for m in models]
        self.params, self.buffers = stack_module_state(self.models)
        skeleton = copy.deepcopy(self.models[0]).to("meta")
        _batch_norm_in_float32(skeleton)

        def one_run(params, buffers, x):
            return functional_call(skeleton, (params, buffers), (x,))

        self.forward = _compiled(vmap(one_run), compile_model)

    def parameters(self):
        return list(self.params.values())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # x: (S, B, 3, H, W) -> (S, B, K)
        return self.forward(self.params, self.buffers, x)

    def finish(self) -> None:
        with torch.no_grad():
            for i, model in enumerate(self.models):
                model.load_state_dict({k: v[i] for k, v in {**self.params, **self.buffers}.items()})
                model.eval()

    def resume(self) -> None:
        """Nothing to undo: `finish` copies the stacked state into the models, which the stacked
        forward does not use."""


def _kl_divergence(target: torch.Tensor, log_predicted: torch.Tensor) -> torch.Tensor:
    """KL(target || predicted) per run, averaged over the batch: (S, B, K) -> (S,)."""
    return (target * (target.clamp_min(1e-12).log() - log_predicted)).sum(-1).mean(-1)


def _record_losses(pending: list[tuple[int, float, torch.Tensor]], runs: list[_Run]) -> list[float]:
    """Append the pending epochs' (epoch, lr, per-run loss tensor) to the runs' histories in one
    device-to-host read; return the last epoch's losses."""
    values = torch.stack([loss for _, _, loss in pending]).tolist()
    for (epoch, lr, _), losses in zip(pending, values, strict=True):
        for run, loss in zip(runs, losses, strict=True):
            run.history.append({"epoch": epoch, "loss": loss, "lr": lr})
    pending.clear()
    return values[-1]


@dataclass(frozen=True, eq=False)  # eq=False: fields hold modules and tensors, compared by identity
class EngineOptions:
    """How `train_classifiers` runs, beside the training settings (`TrainConfig`) and the data:
    seed stacking, progress reporting, evaluation hooks, and the objective's extras (a teacher's
    soft labels, a consistency term on unlabeled images). The defaults train on hard labels alone."""

    #: "auto" | "on" | "off" (or a bool): step the seeds together as one batched model (`use_stacking`)
    stack: str | bool = "auto"
    #: the progress bar's and log lines' label
    desc: str = "train"
    #: called with a progress line every epochs/20 epochs and after the last
    log: Callable[[str], None] | None = None
    #: on_evaluate(epoch, run_indices): see `train_classifiers`
    on_evaluate: Callable[[int, list[int]], None] | None = None
    #: the epochs (1-based) after which `on_evaluate` runs (default: every epoch; always the last)
    evaluate_at: Callable[[int], bool] | None = None
    #: a classifier whose soft labels replace the labels (RDED's protocol)
    teacher: nn.Module | None = None
    #: the softmax temperature of the teacher's and the student's logits
    temperature: float = 1.0
    #: uint8 images (M,3,H,W) for the consistency term
    unlabeled: torch.Tensor | None = None
    #: the consistency term's weight (0: no term, nothing drawn)
    consistency_weight: float = 0.0


def train_classifiers(models: list[nn.Module], seeds: list[int], images: torch.Tensor, labels: torch.Tensor,
                      cfg: TrainConfig, device, options: EngineOptions | None = None) -> list[list[dict]]:
    """Train several models of one architecture in place on the same uint8 images (N,3,H,W) and
    int64 labels (N,), run i with seed `seeds[i]`; return each run's per-epoch history.

    The training engine: images stay on `device` as uint8; each batch is gathered there,
    augmented per image by batched kernels (`detdistill.augment`), CutMixed, and trained with bf16
    autocast and channels-last on CUDA (fp32 on the CPU). Every run keeps its own data order and
    augmentation draws (seeded by its seed, whatever else runs beside it); with stacking (see
    `use_stacking`) the runs step together as one batched model.

    `on_evaluate(epoch, run_indices)`, when given, is called after every epoch (1-based) for which
    `evaluate_at(epoch)` holds (default: every epoch) and after the last, with `models[i]` for i
    in `run_indices` holding that epoch's weights in eval mode (e.g. to measure them); training
    then resumes. It draws nothing from the runs' RNG, so the trained models are the same with it
    or without.

    `teacher`, when given, replaces the labels by its soft labels, computed on each augmented,
    CutMixed batch (RDED's protocol, validation/main.py): the loss is KL(softmax(teacher / T) ||
    softmax(student / T)), averaged over the batch, with T = `temperature` and no T^2 factor (as
    RDED). The teacher is frozen, in eval mode, and sees the batch resized to its own input size.

    `unlabeled` uint8 images (M,3,H,W) with `consistency_weight` w > 0 add a consistency term
    (TAD's outer loop, detdistill.trust): each step also draws a batch of them (with replacement,
    from the run's RNG), augments it twice, and adds w * KL(p_a || p_b), p_a the softmax of the first
    view with its gradient stopped (the target, as UDA and FixMatch do), p_b the second view's. With
    w = 0 or no unlabeled image nothing is drawn: the runs are bit-identical to those without.

    The options above are the fields of `options` (`EngineOptions`; default: all at their defaults)."""
    from torchvision.transforms import v2

    from detdistill.augment import build_augment

    options = options or EngineOptions()
    stack, desc, log, on_evaluate, evaluate_at = (options.stack, options.desc, options.log, options.on_evaluate,
                                                  options.evaluate_at)
    teacher, temperature = options.teacher, options.temperature
    unlabeled, consistency_weight = options.unlabeled, options.consistency_weight
    if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need images (N,3,H,W) and labels (N,) with N>0; got {tuple(images.shape)}, "
                         f"{tuple(labels.shape)}")
    if len(models) != len(seeds) or not models:
        raise ValueError(f"need one seed per model: {len(models)} models, {len(seeds)} seeds")
    consistency = unlabeled is not None and len(unlabeled) > 0 and consistency_weight > 0
    if consistency and teacher is not None:
        raise ValueError("a consistency term on unlabeled images and a teacher's soft labels cannot be combined")
    device = torch.device(device)
    images, labels = images.to(device), labels.to(device).long()  # resident for the whole training
    if consistency:
        unlabeled = unlabeled.to(device)
    n = len(images)
    batch_size = min(cfg.batch_size, n)  # tiny distilled sets: one full batch
    num_classes = models[0].classifier.out_features
    augment = build_augment(images.shape[-1], crop_scale=cfg.crop_scale, crop_size=cfg.crop_size,
                            color_jitter=cfg.color_jitter, flip=cfg.flip, lighting_std=cfg.lighting)
    cutmix = v2.CutMix(num_classes=num_classes, alpha=cfg.cutmix_alpha) if cfg.cutmix_alpha > 0 else None
    amp_dtype = _autocast_dtype(cfg, device)
    runs = [_Run(s) for s in seeds]
    if teacher is not None:
        teacher = teacher.to(device).eval().requires_grad_(False)
        teacher_size = getattr(teacher, "build_args", {}).get("image_size")

        @torch.no_grad()
        def soft_labels(x: torch.Tensor) -> torch.Tensor:  # (S, B, 3, H, W) -> (S, B, K)
            flat = x.flatten(0, 1)
            if teacher_size and flat.shape[-1] != teacher_size:
                flat = F.interpolate(flat, size=(teacher_size, teacher_size), mode="bilinear", antialias=True)
            out = teacher(flat).float() / temperature
            return out.softmax(-1).view(*x.shape[:2], -1)

    if use_stacking(stack, device, len(models)):
        groups = [(runs, _StackedStep(models, device, cfg.compile))]
    else:
        groups = [([run], _ModuleStep(model, device, cfg.compile)) for run, model in zip(runs, models)]

    def batch_of(run: _Run, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The run's augmented batch and its target distribution (one-hot unless CutMixed)."""
        torch.set_rng_state(run.rng_state)
        x, y = to_float(images[idx]), labels[idx]
        if augment is not None:
            x = augment(x)
        if cutmix is not None and torch.rand(()).item() < cfg.cutmix_prob:
            x, y = cutmix(x, y)  # y becomes the mixed target distribution (B, num_classes)
        else:
            y = F.one_hot(y, num_classes).float()
        run.rng_state = torch.get_rng_state()
        return x, y

    def unlabeled_views(run: _Run) -> torch.Tensor:
        """Two augmentations of the run's next unlabeled batch, stacked: (2B, 3, h, w)."""
        torch.set_rng_state(run.rng_state)
        x = to_float(unlabeled[torch.randint(len(unlabeled), (batch_size,)).to(device, non_blocking=True)])
        views = torch.cat([augment(x), augment(x)]) if augment is not None else torch.cat([x, x])
        run.rng_state = torch.get_rng_state()
        return views

    def consistency_loss(group_runs: list[_Run], step) -> torch.Tensor:  # (S,)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = step(torch.stack([unlabeled_views(run) for run in group_runs])).float()
        first, second = logits.chunk(2, dim=1)
        return _kl_divergence(first.detach().softmax(-1), second.log_softmax(-1))

    log_every = max(1, cfg.epochs // 20)
    # The draws use the global CPU RNG: swapped per run inside, the caller's state restored after.
    with torch.random.fork_rng(devices=[]):
        for group_runs, step in groups:
            opt = _make_optimizer(step.parameters(), cfg)
            sched = _make_scheduler(opt, cfg)
            label = desc if len(group_runs) == len(runs) == 1 else f"{desc} seeds {[r.seed for r in group_runs]}"
            bar = tqdm(range(cfg.epochs), desc=label, mininterval=5)
            pending: list[tuple[int, float, torch.Tensor]] = []  # epochs whose losses are still on the device
            for epoch in bar:
                lr = opt.param_groups[0]["lr"]
                # non_blocking: a blocking copy from pageable memory waits for the device's queue (a
                # CUDA stream sync); CUDA stages the source before returning, so it is safe to drop
                orders = [torch.randperm(n, generator=run.order).to(device, non_blocking=True).split(batch_size)
                          for run in group_runs]
                total = torch.zeros(len(group_runs), device=device)
                for batch in zip(*orders):
                    if cfg.compile == "cuda-graphs":
                        # a new iteration: the graphs' previous outputs (last step's logits) may be overwritten
                        torch.compiler.cudagraph_mark_step_begin()
                    xs, ys = zip(*(batch_of(run, idx) for run, idx in zip(group_runs, batch)))
                    x = torch.stack(xs)
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        logits = step(x)
                        soft = None if teacher is None else soft_labels(x)
                    if soft is None:
                        # soft-target cross-entropy per run (equal to the class-index form for
                        # one-hot targets); the sum's gradient for each run's parameters is its own loss's
                        per_run = -(torch.stack(ys) * logits.float().log_softmax(-1)).sum(-1).mean(-1)
                    else:
                        per_run = _kl_divergence(soft, (logits.float() / temperature).log_softmax(-1))
                    if consistency:
                        per_run = per_run + consistency_weight * consistency_loss(group_runs, step)
                    opt.zero_grad(set_to_none=True)
                    per_run.sum().backward()
                    opt.step()
                    total += per_run.detach() * len(batch[0])
                sched.step()
                pending.append((epoch + 1, lr, total / n))
                last = epoch + 1 == cfg.epochs
                if last or (epoch + 1) % log_every == 0:
                    # the losses are read back only here (log_every = epochs / 20): each read waits
                    # for the device, and an IPC-10 epoch is two steps
                    losses = _record_losses(pending, group_runs)
                    bar.set_postfix(loss=f"{sum(losses) / len(losses):.4f}", lr=f"{lr:.3g}")
                    if log is not None:
                        log(f"{label} epoch {epoch + 1}/{cfg.epochs} loss "
                            f"{' '.join(f'{v:.4f}' for v in losses)} lr {lr:.4g}")
                if on_evaluate is not None and (evaluate_at is None or evaluate_at(epoch + 1) or last):
                    step.finish()
                    on_evaluate(epoch + 1, [runs.index(run) for run in group_runs])
                    step.resume()
            step.finish()
    return [run.history for run in runs]


def fit_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                   device, desc: str = "train", log: Callable[[str], None] | None = None) -> list[dict]:
    """Train one model in place (seed `cfg.seed`); return its per-epoch history."""
    return train_classifiers([model], [cfg.seed], images, labels, cfg, device, EngineOptions(desc=desc, log=log))[0]


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Logits, softmax probabilities and penultimate features (CPU float32) for uint8 or [0,1] images."""
    if len(images) == 0:
        raise ValueError("predict needs at least one image")
    was_training = model.training
    model.to(device).eval()
    out = {"logits": [], "probs": [], "features": []}
    for chunk in images.split(batch_size):
        feats = model.features(to_float(chunk.to(device)))
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
#: build_model arguments stored only when set (models saved before them load as the defaults)
OPTIONAL_BUILD_KEYS = ("architecture", "normalization")
#: the one safetensors metadata key of a saved model
METADATA_KEY = "detdistill"


def save_model(model: nn.Module, path, meta: dict | None = None) -> None:
    """Atomically write the state_dict as safetensors; the metadata key `detdistill` holds the
    build_model arguments (from `model.build_args`, else from `meta`) and `meta` as one JSON string
    with sorted keys (one key: safetensors orders several at random, see io.save_safetensors)."""
    meta = dict(meta or {})
    build_args = getattr(model, "build_args", None) or {k: meta[k] for k in BUILD_KEYS if k in meta}
    missing = [k for k in BUILD_KEYS if k not in build_args]
    if missing:
        raise ValueError(f"cannot save model to {path}: build arguments {missing} unknown "
                         "(build it with detdistill.models.build_model or pass them in meta)")
    record = {"build_args": {k: build_args[k] for k in BUILD_KEYS + OPTIONAL_BUILD_KEYS if k in build_args},
              "meta": meta}
    save_safetensors(model.state_dict(), path, metadata={METADATA_KEY: json.dumps(record, sort_keys=True, default=str)})


def read_model_meta(path) -> dict:
    """Metadata of a saved model: {"build_args": {...}, "meta": {...}}."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    if METADATA_KEY in raw:
        return json.loads(raw[METADATA_KEY])
    if "build_args" in raw:  # written before the metadata became one key
        return {k: json.loads(v) for k, v in raw.items() if k in ("build_args", "meta")}
    raise ValueError(f"{path} has no build_args metadata; was it written by detdistill.train.save_model?")


def model_temperature(path) -> float | None:
    """The softmax temperature stored with a saved model (a detector trained with
    `refinement.beta_mode: temperature`, detdistill.calibration); None for every other model."""
    temperature = read_model_meta(path)["meta"].get("temperature")
    return None if temperature is None else float(temperature)


def load_model(path, device) -> nn.Module:
    """Rebuild the architecture from the file's metadata and load its weights, in eval mode."""
    from safetensors.torch import load_file

    model = build_model(**read_model_meta(path)["build_args"])
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()
