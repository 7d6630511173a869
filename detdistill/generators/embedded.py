"""The embedded default generator: a small class-conditional latent diffusion model built only from
stock diffusers components, trained offline on CPU in minutes.

* `AutoencoderKL` with 4 latent channels and a downsampling factor 4 (32 px -> 8x8 latents), its
  `scaling_factor` set at construction to 1/std of the training latents' posterior means.
* `UNet2DConditionModel` conditioned on the class through a learned label embedding passed as a
  one-token `encoder_hidden_states` (N, 1, D); row `num_classes` of the embedding is the null
  (unconditional) token used for classifier-free guidance, trained by label dropout.
* `DDPMScheduler` for training, `DDIMScheduler(clip_sample=False, steps_offset=1)` for sampling.
* Sampling runs the stock `StableDiffusionImg2ImgPipeline` (no text encoder, no tokenizer) on
  `prompt_embeds` / `negative_prompt_embeds`, with 4-channel scaled latents as its `image`.

Checkpoint layout (`out_dir`): `vae/`, `unet/` (EMA weights), `scheduler/` (`save_pretrained`,
safetensors), `label_embedding.safetensors` (EMA weights, (num_classes + 1, D)) and
`generator.json` {"backend": "embedded", "class_names", "image_size", "latent_shape",
"train_config", "final_losses"}. No wall time is stored: the same config gives the same bytes
(the training time is in the rule's log and benchmark file).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import schema
from ..device import pick_device, seed_everything
from ..io import atomic_dir, save_safetensors, write_json
from ..train import to_float
from .base import BACKENDS, LATENT_CHANNELS, Generator, GeneratorBackend, checkpoint_files

BACKEND = "embedded"
IMAGE_SIZE = 32

#: The `$defs` entry of config/schema.yaml holding every training setting and its default.
TRAIN_SCHEMA = "embedded_train"
#: Every training setting's default, as config/schema.yaml writes it (read from there, not repeated)
DEFAULT_CONFIG: dict = schema.defaults(TRAIN_SCHEMA)

log = logging.getLogger("detdistill")

_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def _groups(channels: Sequence[int]) -> int:
    """Largest GroupNorm group count (<= 32) dividing every channel count."""
    g = 0
    for c in channels:
        g = math.gcd(g, int(c))
    return min(32, g)


def _vae_config(cfg: dict, scaling_factor: float = 1.0) -> dict:
    ch = [int(c) for c in cfg["vae_channels"]]
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * len(ch),
        "up_block_types": ["UpDecoderBlock2D"] * len(ch),
        "block_out_channels": ch,
        "layers_per_block": 1,
        "latent_channels": LATENT_CHANNELS,
        "norm_num_groups": _groups(ch),
        "sample_size": IMAGE_SIZE,
        "scaling_factor": float(scaling_factor),
    }


def _unet_config(cfg: dict, latent_size: int) -> dict:
    ch = [int(c) for c in cfg["unet_channels"]]
    return {
        "sample_size": latent_size,
        "in_channels": LATENT_CHANNELS,
        "out_channels": LATENT_CHANNELS,
        "down_block_types": ["CrossAttnDownBlock2D"] * (len(ch) - 1) + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (len(ch) - 1),
        "block_out_channels": ch,
        "layers_per_block": 1,
        "cross_attention_dim": int(cfg["cross_attention_dim"]),
        "attention_head_dim": max(1, ch[0] // 8),
        "norm_num_groups": _groups(ch),
    }


def _ddim(cfg: dict):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=int(cfg["train_timesteps"]),
        **_BETAS,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )


def _warmup_cosine(opt: torch.optim.Optimizer, steps: int):
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 10 % of the peak."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        opt, num_warmup_steps=max(1, steps // 20), num_training_steps=steps, min_lr_rate=0.1
    )


def _ema(params: list[torch.nn.Parameter], decay: float):
    """diffusers' EMAModel over `params`, without use_ema_warmup: the decay at update k (from 0) is
    (1 + k) / (10 + k) capped at `decay` (0 at the first update, which copies the weights)."""
    from diffusers.training_utils import EMAModel

    return EMAModel(params, decay=decay, min_decay=0.0, update_after_step=0, use_ema_warmup=False, foreach=True)


def _kl_per_element(dist) -> torch.Tensor:
    """KL(posterior || N(0, I)) averaged over the latent elements: `kl()` sums over each image's
    elements; per element, as the MSE is per pixel, the KL weight keeps its meaning at any latent size."""
    return dist.kl().mean() / dist.mean[0].numel()


@torch.no_grad()
def _latent_stats(vae, images: torch.Tensor, device, batch: int = 256):
    means, stds = [], []
    vae.eval()
    for i in range(0, len(images), batch):
        x = to_float(images[i : i + batch]).to(device) * 2 - 1
        dist = vae.encode(x).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def _train_vae(images: torch.Tensor, cfg: dict, device, log):
    """Train the AutoencoderKL on uint8 images; return it (eval mode, `scaling_factor` set) and its last MSE."""
    from diffusers import AutoencoderKL
    from tqdm.auto import tqdm

    gen = seed_everything(int(cfg["seed"]))
    # images stay uint8 (50k CIFAR-10 images: 150 MB); each batch is converted to [-1, 1] as drawn,
    # the values a float copy of the whole set would hold, without its 600 MB (and the temporaries')
    n, bs = len(images), int(cfg["batch_size"])
    vae = AutoencoderKL(**_vae_config(cfg)).to(device)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=float(cfg["vae_lr"]), weight_decay=0.0)
    steps = int(cfg["vae_steps"])
    sched = _warmup_cosine(opt, steps)
    kl_w = float(cfg["vae_kl_weight"])
    recent: list[float] = []
    vae_loss = float("nan")
    for step in tqdm(range(steps), desc="vae", mininterval=5, disable=steps == 0):
        idx = torch.randint(0, n, (bs,), generator=gen)
        x = (to_float(images[idx]) * 2 - 1).to(device)  # the VAE works in [-1, 1]
        dist = vae.encode(x).latent_dist
        rec = vae.decode(dist.sample(generator=gen)).sample
        mse = F.mse_loss(rec, x)
        kl = _kl_per_element(dist)
        loss = mse + kl_w * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent.append(mse.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            vae_loss = sum(recent) / len(recent)
            log(f"vae step {step + 1}/{steps} mse {vae_loss:.5f} kl {kl.item():.3f}")
            recent = []
    means, stds = _latent_stats(vae, images, device)
    scaling_factor = float(1.0 / means.std())
    log(f"latents {tuple(means.shape[1:])}: posterior-mean std {means.std():.4f} -> scaling_factor "
        f"{scaling_factor:.4f}; median posterior std {stds.median():.4f}")
    # rebuilt so that scaling_factor is a construction argument (register_to_config reverts on from_config)
    final = AutoencoderKL(**_vae_config(cfg, scaling_factor))
    final.load_state_dict(vae.state_dict())
    return final.to(device).eval(), vae_loss


def _train_unet(latents: torch.Tensor, latent_std: torch.Tensor, labels: torch.Tensor, num_classes: int,
                cfg: dict, device, log):
    """Train UNet + label embedding on scaled latents (posterior samples: mean + std * noise).

    Returns the EMA weights (UNet in eval mode, the embedding as a tensor) and the last loss."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from tqdm.auto import tqdm

    gen = seed_everything(int(cfg["seed"]) + 1)
    n, bs = len(latents), int(cfg["batch_size"])
    unet = UNet2DConditionModel(**_unet_config(cfg, latents.shape[-1])).to(device)
    embed = nn.Embedding(num_classes + 1, int(cfg["cross_attention_dim"])).to(device)
    nn.init.normal_(embed.weight, std=1.0)
    params = list(unet.parameters()) + list(embed.parameters())
    ema = _ema(params, float(cfg["ema_decay"]))
    opt = torch.optim.AdamW(params, lr=float(cfg["unet_lr"]), weight_decay=0.0)
    steps = int(cfg["unet_steps"])
    sched = _warmup_cosine(opt, steps)
    T = int(cfg["train_timesteps"])
    noise_scheduler = DDPMScheduler(num_train_timesteps=T, **_BETAS, clip_sample=False)
    p_drop = float(cfg["label_dropout"])
    unet.train()
    unet_loss = float("nan")
    recent: list[float] = []
    for step in tqdm(range(steps), desc="unet", mininterval=5, disable=steps == 0):
        idx = torch.randint(0, n, (bs,), generator=gen)
        z0 = latents[idx] + latent_std[idx] * torch.randn(latents[idx].shape, generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, T, (bs,), generator=gen)
        y = labels[idx].clone()
        y[torch.rand(bs, generator=gen) < p_drop] = num_classes
        z0, noise, t, y = z0.to(device), noise.to(device), t.to(device), y.to(device)
        zt = noise_scheduler.add_noise(z0, noise, t)
        pred = unet(zt, t, encoder_hidden_states=embed(y).unsqueeze(1)).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema.step(params)
        recent.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            unet_loss = sum(recent) / len(recent)
            log(f"unet step {step + 1}/{steps} loss {unet_loss:.4f} lr {sched.get_last_lr()[0]:.2e}")
            recent = []
    ema.copy_to(params)
    return unet.eval(), embed.weight.detach(), unet_loss



def train_embedded_generator(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    cfg: dict,
    out_dir,
    device,
    log: Callable[[str], None] | None = None,
) -> None:
    """Train the embedded latent diffusion generator and save it to `out_dir` (atomically).

    images: uint8 (N, 3, 32, 32), the train split only; labels: int (N,) in [0, len(class_names)).
    cfg keys (missing ones take their default from config/schema.yaml, `$defs/embedded_train`;
    unknown ones raise `detdistill.schema.UnknownKeys`):
      vae_steps, unet_steps      optimisation steps of the autoencoder, then of the UNet
      batch_size                 images per step for both stages
      vae_lr, unet_lr            AdamW peak learning rates (warm-up over 5 % of the steps, cosine
                                 decay to 10 %: transformers' get_cosine_with_min_lr_schedule_with_warmup)
      vae_channels               AutoencoderKL block_out_channels; 3 entries -> 8x8 latents at 32 px
      unet_channels              UNet2DConditionModel block_out_channels (layers_per_block=1)
      cross_attention_dim        label-embedding size (the UNet's encoder_hidden_states width)
      vae_kl_weight              KL weight against the per-pixel MSE of the autoencoder
      label_dropout              probability of the null label in UNet training (for CFG)
      ema_decay                  largest EMA decay of UNet + label-embedding weights (EMAModel,
                                 warm-up (1 + k) / (10 + k)); the EMA weights are saved
      train_timesteps            diffusion timesteps of the DDPM/DDIM schedules
      seed                       seeds initialisation, batches, noise and dropout
    Same cfg and data on the CPU give the same weights.
    """
    log = log or (lambda msg: None)
    cfg = schema.with_defaults(TRAIN_SCHEMA, cfg, "generator.train")
    device = torch.device(device)
    out_dir = Path(out_dir)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != IMAGE_SIZE or images.shape[-2] != IMAGE_SIZE:
        raise ValueError(f"expected images (N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(images.shape)}")
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    num_classes = len(class_names)
    if len(labels) != len(images) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError("labels must be one per image, in [0, len(class_names))")
    started = time.time()
    vae, vae_loss = _train_vae(images.cpu(), cfg, device, log)
    means, stds = _latent_stats(vae, images.cpu(), device)
    sf = vae.config.scaling_factor
    unet, embed, unet_loss = _train_unet(means * sf, stds * sf, labels, num_classes, cfg, device, log)
    seconds = time.time() - started
    log(f"trained in {seconds:.0f} s")

    meta = {
        "backend": BACKEND,
        "class_names": [str(c) for c in class_names],
        "image_size": IMAGE_SIZE,
        "latent_shape": list(means.shape[1:]),
        "train_config": cfg,
        "final_losses": {"vae_mse": vae_loss, "unet_eps_mse": unet_loss},
        "train_images": len(images),
    }

    with atomic_dir(out_dir) as tmp:
        vae.to("cpu").save_pretrained(tmp / "vae", safe_serialization=True)
        unet.to("cpu").save_pretrained(tmp / "unet", safe_serialization=True)
        _ddim(cfg).save_pretrained(tmp / "scheduler")
        save_safetensors({"weight": embed.to("cpu")}, tmp / "label_embedding.safetensors")
        write_json(meta, tmp / "generator.json")
    log(f"saved {out_dir}")


class EmbeddedGenerator(Generator):
    """The trained embedded latent diffusion model; sampling through the stock img2img pipeline."""

    #: images per pipeline call
    batch_size: int = 64

    def __init__(self, vae, unet, scheduler, label_embedding: torch.Tensor, class_names, image_size, device):
        from diffusers import StableDiffusionImg2ImgPipeline

        self.device = torch.device(device)
        self.class_names = list(class_names)
        self.image_size = int(image_size)
        self.vae = vae.to(self.device).eval()
        self.unet = unet.to(self.device).eval()
        self.label_embedding = label_embedding.to(self.device)
        self.pipe = StableDiffusionImg2ImgPipeline(
            vae=self.vae,
            unet=self.unet,
            scheduler=scheduler,
            text_encoder=None,
            tokenizer=None,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        self.pipe.set_progress_bar_config(disable=True)
        sc = self.pipe.scheduler.config
        if sc.steps_offset != 1 or sc.clip_sample or sc.timestep_spacing != "leading":
            raise ValueError(f"unexpected sampling scheduler config: {dict(sc)}")

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def null_label(self) -> int:
        return len(self.class_names)

    @classmethod
    def load(cls, path, device) -> EmbeddedGenerator:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from safetensors.torch import load_file

        path = Path(path)
        meta = json.loads((path / "generator.json").read_text())
        if meta.get("backend") != BACKEND:
            raise ValueError(f"{path / 'generator.json'}: backend is {meta.get('backend')!r}, not {BACKEND!r}")
        vae = AutoencoderKL.from_pretrained(path / "vae", local_files_only=True, low_cpu_mem_usage=False)
        unet = UNet2DConditionModel.from_pretrained(path / "unet", local_files_only=True, low_cpu_mem_usage=False)
        scheduler = DDIMScheduler.from_pretrained(path / "scheduler", local_files_only=True)
        embedding = load_file(str(path / "label_embedding.safetensors"))["weight"]
        if embedding.shape[0] != len(meta["class_names"]) + 1:
            raise ValueError(f"{path}: label embedding has {embedding.shape[0]} rows for {len(meta['class_names'])} classes (+1 null)")
        return cls(vae, unet, scheduler, embedding, meta["class_names"], meta["image_size"], device)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled posterior means (N, 4, 8, 8) of images (N, 3, 32, 32) in [0, 1] (uint8 accepted)."""
        out = []
        for i in range(0, len(images), self.batch_size):
            x = to_float(images[i : i + self.batch_size]).to(self.device)
            if x.shape[-2:] != (self.image_size, self.image_size):
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            mean = self.vae.encode(x * 2 - 1).latent_dist.mean
            out.append((mean * self.scaling_factor).float().cpu())
        if not out:
            return torch.empty((0, LATENT_CHANNELS, self.latent_size, self.latent_size))
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images (N, 3, 32, 32) in [0, 1] on the CPU."""
        out = []
        for i in range(0, len(latents), self.batch_size):
            z = latents[i : i + self.batch_size].to(self.device) / self.scaling_factor
            out.append(((self.vae.decode(z).sample + 1) / 2).clamp(0, 1).float().cpu())
        return torch.cat(out)

    def condition(self, labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The labels' embedding rows and the null row, as one-token sequences (N, 1, D)."""
        cond = self.label_embedding[torch.tensor(labels, device=self.device)].unsqueeze(1)
        return cond, self.label_embedding[self.null_label].expand(len(cond), 1, -1)

    def sample(self, labels: Sequence[int], seeds: Sequence[int], guidance: float, steps: int) -> torch.Tensor:
        """Generate from pure noise: img2img at strength 1 from zero latents."""
        zeros = torch.zeros((len(labels), LATENT_CHANNELS, self.latent_size, self.latent_size))
        return self.img2img(zeros, labels, seeds, strength=1.0, guidance=guidance, steps=steps)


@BACKENDS.register
class EmbeddedBackend(GeneratorBackend):
    """Trains the small latent diffusion model on the train split; its checkpoint folder holds
    every file it loads."""

    name = BACKEND
    schema_section = TRAIN_SCHEMA  # the `generator.train` settings

    def check(self, generator_cfg: dict) -> None:
        """Nothing to check before the run: it needs only the train split."""

    def prepare(self, *, train_manifest, source_cfg: dict, image_size: int, generator_cfg: dict, out_dir) -> None:
        from .. import data

        images = data.load_images(train_manifest, source_cfg, image_size)
        labels = data.label_tensor(train_manifest)
        train_embedded_generator(
            images, labels, data.class_names(train_manifest), generator_cfg["train"], out_dir, pick_device(), log=log.info
        )

    def load(self, path, device, **speed_options) -> EmbeddedGenerator:
        # the speed settings are Stable Diffusion's on CUDA: this float32 model takes none
        return EmbeddedGenerator.load(path, device)

    def key_files(self, folder: Path, meta: dict) -> dict[str, Path]:
        return checkpoint_files(folder)
