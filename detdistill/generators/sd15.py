"""Stable Diffusion v1.5 backend: the stock diffusers `StableDiffusionImg2ImgPipeline`, offline.

Weights are never downloaded here: `resolve_weights` finds a local diffusers folder or a copy in
the Hugging Face cache, and otherwise raises `MissingWeightsError` saying how to fetch them.

Spec layout (`out_dir/generator.json`): {"backend": "sd15", "model", "weights", "class_names",
"prompt_template", "negative_prompt", "image_size", "scheduler"}. The weights stay where they are.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import schema
from ..io import write_json
from ..train import to_float
from .base import BACKENDS, LATENT_CHANNELS, Generator, GeneratorBackend, GeneratorNotReady, checkpoint_files

BACKEND = "sd15"
#: the dataset's `generator` settings in config/schema.yaml: model, prompt and scheduler defaults
SCHEMA_SECTION = "dataset.generator"
_SPEC_DEFAULTS = schema.defaults(SCHEMA_SECTION)
DEFAULT_MODEL = _SPEC_DEFAULTS["model"]

#: The diffusers-format files the pipeline loads (about 5 GB): the repository also holds
#: full-checkpoint, fp16, non-EMA, Flax and .bin copies (tens of GB) that are not needed.
WEIGHT_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
#: Components the pipeline needs; the safety checker and feature extractor are not loaded.
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

#: scheduler name -> (diffusers class, config overrides). Clipping the predicted sample to [-1, 1]
#: is for pixel-space models: on latents it produces blobs, so it is switched off.
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {"clip_sample": False}),
    "ddpm": ("DDPMScheduler", {"clip_sample": False}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}

#: `synthesis.dtype` choices on CUDA; the CPU always runs float32
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}

log = logging.getLogger("detdistill")

class MissingWeightsError(FileNotFoundError, GeneratorNotReady):
    """The Stable Diffusion weights are neither in the named folder nor in the Hugging Face cache."""


def hf_hub_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hugging Face hub cache folder, read from the environment now rather than at import of
    `huggingface_hub` (whose constants freeze HF_HOME / HF_HUB_CACHE when first imported: a process
    that set them later, a notebook or a test, would look in the old cache); the same variables and
    precedence as `huggingface_hub.constants`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(os.path.expandvars(env[var])).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _is_repo_id(model: str) -> bool:
    """A well-formed Hugging Face repo id (huggingface_hub's own check)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def _missing_parts(folder: Path) -> list[str]:
    """What a diffusers pipeline folder lacks ([] when complete enough to load)."""
    index = folder / "model_index.json"
    if not index.is_file():
        return ["model_index.json"]
    listed = json.loads(index.read_text())
    return [
        f"{name}/"
        for name in REQUIRED_COMPONENTS
        if not (isinstance(listed.get(name), list) and listed[name][0] is not None and (folder / name).is_dir())
    ]


def _download_hint(repo_id: str, folder: str) -> str:
    return f"hf download {repo_id} {' '.join(WEIGHT_FILES)} --local-dir {folder}"


def resolve_weights(model: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local diffusers folder of `model`: a folder path, or a hub id found in the HF cache
    (offline: nothing is downloaded). Raises `MissingWeightsError` saying where it looked."""
    folder = Path(model).expanduser()
    looked: list[str] = []
    if folder.is_dir():
        missing = _missing_parts(folder)
        if not missing:
            return folder.resolve()
        looked.append(f"folder {folder.resolve()} (exists but lacks {', '.join(missing)})")
    else:
        looked.append(f"folder {folder.resolve()} (does not exist)")

    # "resources/sd15" is both a valid hub id and a relative path: an existing parent folder
    # says it is meant as a path
    is_repo_id = (
        _is_repo_id(model)
        and not model.startswith((".", "~"))
        and not ("/" in model and folder.parent.is_dir())
    )
    cache = hf_hub_cache(cache_dir)
    if is_repo_id:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        try:
            snapshot = Path(snapshot_download(model, cache_dir=str(cache), local_files_only=True))
        except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError):
            looked.append(f"Hugging Face cache {cache} (no snapshot of {model})")
        else:
            missing = _missing_parts(snapshot)
            if not missing:
                return snapshot
            looked.append(f"Hugging Face cache {cache} (snapshot {snapshot} lacks {', '.join(missing)})")

    if is_repo_id:
        repo_id, target = model, f"resources/{model.rsplit('/', 1)[-1]}"
        alternative = f" (or drop --local-dir to fill the HF cache at {cache} and keep `generator.model: {model}`)"
    else:
        repo_id, target, alternative = DEFAULT_MODEL, str(folder), ""
    raise MissingWeightsError(
        f"Stable Diffusion weights for {model!r} not found offline. Looked in: {'; '.join(looked)}. "
        f"On a machine with network, fetch them (about 5 GB) with:\n  {_download_hint(repo_id, target)}\n"
        f"(`huggingface-cli download` takes the same arguments on older huggingface_hub), bring the "
        f"folder here and set `generator.model: {target}` in the dataset's config{alternative}."
    )


def _vae_factor(weights: Path) -> int:
    config = json.loads((weights / "vae" / "config.json").read_text())
    return 2 ** (len(config["block_out_channels"]) - 1)


def write_generator_spec(
    out_dir,
    *,
    model: str,
    class_names: list[str],
    prompt_template: str = _SPEC_DEFAULTS["prompt_template"],
    negative_prompt: str | None = _SPEC_DEFAULTS["negative_prompt"],
    image_size: int,
    scheduler: str | None = _SPEC_DEFAULTS["scheduler"],
) -> None:
    """Write `out_dir/generator.json` for the sd15 backend; fails here if the weights are missing.
    Left-out settings take config/schema.yaml's defaults."""
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}: expected one of {sorted(SCHEDULERS)} or None")
    if "{name}" not in prompt_template:
        raise ValueError(f"prompt_template must contain '{{name}}': {prompt_template!r}")
    if len(class_names) < 1 or len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be non-empty and unique: {class_names}")
    weights = resolve_weights(model)
    factor = _vae_factor(weights)
    if int(image_size) % factor:
        raise ValueError(f"image_size {image_size} must be a multiple of the VAE's downsampling factor {factor}")
    spec = {
        "backend": BACKEND,
        "model": model,
        "weights": str(weights),
        "class_names": list(class_names),
        "prompt_template": prompt_template,
        "negative_prompt": negative_prompt,
        "image_size": int(image_size),
        "scheduler": scheduler,
    }
    write_json(spec, Path(out_dir) / "generator.json")


def spec_weights(meta: dict) -> Path:
    """The weights folder a `generator.json` spec loads: its recorded folder, or, when that is
    incomplete (the spec may come from another machine), the model found again."""
    weights = Path(meta["weights"])
    return resolve_weights(meta["model"]) if _missing_parts(weights) else weights


def spec_weight_files(meta: dict) -> list[Path]:
    """The files of the spec's weights folder that the pipeline loads (WEIGHT_FILES present):
    what the generator's identity hashes, not the repository's other copies."""
    weights = spec_weights(meta)
    return [weights / name for name in WEIGHT_FILES if (weights / name).is_file()]


def set_scheduler(pipe, name: str | None) -> None:
    """Swap the pipeline's scheduler for `name` (a key of SCHEDULERS), keeping the model's
    betas and timestep settings; None keeps the model's own."""
    if name is None:
        return
    import diffusers

    cls_name, overrides = SCHEDULERS[name]
    pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **overrides)


def speed_up(pipe, *, channels_last: bool, compile_unet: bool):
    """Channels-last UNet and VAE, and a `torch.compile`d UNet (fullgraph): the settings timed by
    bench/sd_img2img_speed.py. Images stay the same up to half-precision rounding."""
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if compile_unet:
        pipe.unet = torch.compile(pipe.unet, fullgraph=True)
    return pipe


class StableDiffusionGenerator(Generator):
    """Stable Diffusion v1.5 through the stock img2img pipeline, prompted by class name."""

    #: images per pipeline call (classifier-free guidance doubles the UNet batch)
    batch_size: int = 32

    def __init__(self, pipe, *, class_names, image_size, prompt_template, negative_prompt, device):
        self.pipe = pipe
        self.device = torch.device(device)
        self.class_names = list(class_names)
        self.image_size = int(image_size)
        self.prompt_template = prompt_template
        self.negative_prompt = negative_prompt
        self._cond: dict[int, torch.Tensor] = {}
        self._uncond: torch.Tensor | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    @property
    def scaling_factor(self) -> float:
        return float(self.pipe.vae.config.scaling_factor)

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)

    @classmethod
    def load(
        cls,
        path,
        device,
        *,
        dtype: str = "float16",
        channels_last: bool = True,
        compile_unet: bool = False,
    ) -> StableDiffusionGenerator:
        """On CUDA: half precision `dtype` (a key of DTYPES), channels-last UNet and VAE, optionally
        a compiled UNet. On the CPU the pipeline stays float32, contiguous and uncompiled whatever
        is asked."""
        from diffusers import StableDiffusionImg2ImgPipeline

        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: expected one of {sorted(DTYPES)}")
        path = Path(path)
        meta = json.loads((path / "generator.json").read_text())
        if meta.get("backend") != BACKEND:
            raise ValueError(f"{path / 'generator.json'}: backend is {meta.get('backend')!r}, not {BACKEND!r}")
        device = torch.device(device)
        cuda = device.type == "cuda"
        if not cuda and (compile_unet or channels_last):
            log.info("sd15 on %s: float32, contiguous, uncompiled (synthesis.compile/channels_last/dtype are for CUDA)", device)
        weights = spec_weights(meta)
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            weights,
            local_files_only=True,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            dtype=DTYPES[dtype] if cuda else torch.float32,
            # without accelerate diffusers falls back anyway, with a warning
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        )
        set_scheduler(pipe, meta.get("scheduler"))
        pipe = pipe.to(device)
        if cuda:
            speed_up(pipe, channels_last=channels_last, compile_unet=compile_unet)
        pipe.set_progress_bar_config(disable=True)
        return cls(
            pipe,
            class_names=meta["class_names"],
            image_size=meta["image_size"],
            prompt_template=meta.get("prompt_template", _SPEC_DEFAULTS["prompt_template"]),
            negative_prompt=meta.get("negative_prompt"),
            device=device,
        )

    def prompt(self, label: int) -> str:
        return self.prompt_template.format(name=self.class_names[label])

    @torch.no_grad()
    def condition(self, labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) text embeddings, each prompt encoded once, alone, and then reused."""
        for y in sorted(set(labels) - self._cond.keys()):
            cond, uncond = self.pipe.encode_prompt(
                self.prompt(y), self.device, 1, True, negative_prompt=self.negative_prompt
            )
            self._cond[y] = cond[0]
            if self._uncond is None:
                self._uncond = uncond[0]
        cond = torch.stack([self._cond[y] for y in labels])
        return cond, self._uncond.expand(len(labels), -1, -1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled posterior means (N, 4, s/8, s/8) of images (N, 3, H, W) in [0, 1] (uint8 accepted),
        resized to `image_size` s first when they differ."""
        images = to_float(images)
        size = (self.image_size, self.image_size)
        out = []
        for i in range(0, len(images), self.batch_size):
            x = images[i : i + self.batch_size].to(self.device, torch.float32)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            mean = self.pipe.vae.encode((x * 2 - 1).to(self.dtype)).latent_dist.mean
            out.append(mean.float().cpu() * self.scaling_factor)
        if not out:
            return torch.empty((0, LATENT_CHANNELS, self.latent_size, self.latent_size))
        return torch.cat(out)


@BACKENDS.register
class StableDiffusionBackend(GeneratorBackend):
    """Stable Diffusion v1.5 from local weights: its checkpoint folder is a `generator.json` spec
    naming the weights folder, which stays where it is."""

    name = BACKEND
    schema_section = SCHEMA_SECTION  # model, prompt_template, negative_prompt, scheduler, image_size

    def check(self, generator_cfg: dict) -> None:
        resolve_weights(generator_cfg["model"])

    def prepare(self, *, train_manifest, source_cfg: dict, image_size: int, generator_cfg: dict, out_dir) -> None:
        from .. import data

        # keys left out of the config keep write_generator_spec's defaults (one place for them)
        optional = {k: generator_cfg[k] for k in ("prompt_template", "negative_prompt", "scheduler") if k in generator_cfg}
        # generator.image_size: SD's working resolution, when it is not the dataset's
        write_generator_spec(
            out_dir, model=generator_cfg["model"], class_names=data.class_names(train_manifest),
            image_size=generator_cfg.get("image_size") or image_size, **optional
        )

    def load(self, path, device, **speed_options) -> StableDiffusionGenerator:
        return StableDiffusionGenerator.load(path, device, **speed_options)

    def key_files(self, folder: Path, meta: dict) -> dict[str, Path]:
        files = checkpoint_files(folder)
        files.update({f"sd15-weights/{p.parent.name}/{p.name}": p for p in spec_weight_files(meta)})
        return files
