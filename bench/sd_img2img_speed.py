#!/usr/bin/env python
"""Time img2img candidate generation with an SD-v1.5-shaped UNet and VAE.

Two paths over the same random weights (built from the published SD v1.5 architecture, so no
download is needed; speed does not depend on the weights' values):

* ours: the stock `StableDiffusionImg2ImgPipeline` called the way the `generate_candidates` stage
  calls it: `--prototypes` defective images x `--candidates` rows (`detdistill.stages.generation.candidate_rows`)
  generated in chunks of `--batch` across prototypes (`detdistill.stages.generation.generate_chunks`, through
  `run_img2img`), fp16 (or bf16) on CUDA, one seeded generator per image; optionally channels-last
  and compiled (`detdistill.generators.sd15.speed_up`, as `synthesis.channels_last` / `compile`);
* reference: the same pipeline in fp32 at batch 1, a Python loop over images, as the D4M code does.

Both run 50 steps x strength 0.7 (35 denoising steps), guidance 10 (classifier-free guidance
doubles the UNet batch), PNDM as in SD v1.5, from random 4-channel prototype latents. A random
(77, 768) tensor stands in for the CLIP text encoder's output: the encoder runs once per call,
not per step, so it is a small part of the cost and is left out of both paths.

Achieved FLOP/s counts the UNet and VAE-decoder FLOPs (torch.utils.flop_counter on one batch-1
forward each, times the number of forwards per image, counted with hooks), so the share of peak is
an estimate of useful work; elementwise ops and the scheduler are not counted.

    python bench/sd_img2img_speed.py                      # CUDA, 256 px, writes bench/measurements/
    python bench/sd_img2img_speed.py --tiny --device cpu  # seconds-long smoke test at tiny size
    python bench/sd_img2img_speed.py --prototypes 10 --batch 100 --channels-last --compile

JSON `ours`: `seconds_per_call` lists the timed passes (one pass = every prototype's candidates, in
`calls_per_pass` pipeline calls of at most `batch` images); `images_per_s` = `images_per_pass` /
median pass. With `--prototypes 1 --batch` = `--candidates` (the defaults) a pass is one call.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import diffusers
import numpy as np
import pandas as pd
import torch

# no progress bar from the stage's chunk loop (tqdm reads this when imported)
os.environ.setdefault("TQDM_DISABLE", "1")

from detdistill.generators.base import run_img2img
from detdistill.generators.sd15 import speed_up
from detdistill.stages.generation import candidate_rows, generate_chunks
from detdistill.testing.machine import cpu_description
from detdistill.testing.sd_shapes import (
    TEXT_TOKENS,
    UNET_SD15,
    UNET_TINY,
    VAE_SD15,
    VAE_TINY,
    build_sd_pipeline,
    vae_factor,
)

REPO = Path(__file__).resolve().parents[1]

#: dense bf16 (= fp16) tensor-core peak in TFLOP/s, by a pattern of torch.cuda.get_device_name()
PEAK_TFLOPS = [
    (r"H100.*PCIe", 756.0),
    (r"H100.*NVL", None),  # not looked up: pass --peak-tflops
    (r"H100|GH200", 989.0),
    (r"H200", 989.0),
    (r"A100", 312.0),
]

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def lookup_peak(name: str) -> float | None:
    for pattern, peak in PEAK_TFLOPS:
        if re.search(pattern, name):
            return peak
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_description()}; {torch.get_num_threads()} threads)"


def build_pipe(unet_cfg: dict, vae_cfg: dict, device: torch.device, seed: int = 0):
    """fp32 pipeline with random weights, created directly on `device`; no text encoder."""
    pipe = build_sd_pipeline(unet_cfg, vae_cfg, device=device, seed=seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def derive_pipe(pipe, dtype: torch.dtype, channels_last: bool, compile_unet: bool):
    """A copy of `pipe` in `dtype`, optionally channels-last and with a compiled UNet."""
    from diffusers import StableDiffusionImg2ImgPipeline

    out = StableDiffusionImg2ImgPipeline(
        vae=copy.deepcopy(pipe.vae).to(dtype),
        unet=copy.deepcopy(pipe.unet).to(dtype),
        text_encoder=None,
        tokenizer=None,
        scheduler=copy.deepcopy(pipe.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out.set_progress_bar_config(disable=True)
    return speed_up(out, channels_last=channels_last, compile_unet=compile_unet)


class PipeGenerator:
    """The `Generator.img2img` interface over a bench pipeline and fixed text embeddings, so the
    stage's own chunking (`generate_chunks`) drives it."""

    def __init__(self, pipe, cond, uncond):
        self.pipe, self.cond, self.uncond = pipe, cond, uncond

    def img2img(self, latents, labels, seeds, *, strength, guidance, steps):
        p = next(self.pipe.vae.parameters())
        c, u = (x.to(p.device, p.dtype).expand(len(seeds), -1, -1) for x in (self.cond, self.uncond))
        return run_img2img(self.pipe, latents, c, u, seeds, strength=strength, guidance=guidance, steps=steps)


class BatchCounter:
    """Counts samples through a module's forward (sum of the first input's batch sizes)."""

    def __init__(self, module):
        self.samples = 0
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.samples += int(args[0].shape[0])

    def remove(self):
        self.handle.remove()


@torch.no_grad()
def forward_flops(pipe, latent_hw: int, text_dim: int) -> tuple[int, int]:
    """FLOPs of one batch-1 UNet forward and one batch-1 VAE decode. The math SDPA backend is
    forced so attention shows up as matmuls on every device (the fused CPU kernel is not counted)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    p = next(pipe.unet.parameters())
    z = torch.randn(1, 4, latent_hw, latent_hw, device=p.device, dtype=p.dtype)
    text = torch.randn(1, TEXT_TOKENS, text_dim, device=p.device, dtype=p.dtype)
    t = torch.tensor([500], device=p.device)
    with sdpa_kernel([SDPBackend.MATH]):
        with FlopCounterMode(display=False) as fc:
            pipe.unet(z, t, encoder_hidden_states=text)
        unet = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            pipe.vae.decode(z / pipe.vae.config.scaling_factor)
        vae = fc.get_total_flops()
    return int(unet), int(vae)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (CUDA when present)")
    ap.add_argument("--tiny", action="store_true", help="tiny UNet/VAE at 32 px: a smoke test, not a benchmark")
    ap.add_argument("--size", type=int, default=None, help="image size in px (default 256; 32 with --tiny)")
    ap.add_argument("--candidates", type=int, default=20, help="candidates per prototype (defective image)")
    ap.add_argument("--prototypes", type=int, default=1, help="defective images of one job, each with --candidates rows")
    ap.add_argument("--batch", type=int, default=None, help="images per pipeline call across prototypes (default: --candidates)")
    ap.add_argument("--reference-images", type=int, default=None, help="images of the batch-1 loop (default: --candidates)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--strength", type=float, default=0.7)
    ap.add_argument("--guidance", type=float, default=10.0)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="our path's dtype (default fp16 on CUDA, fp32 on CPU)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last UNet and VAE on our path")
    ap.add_argument("--compile", action="store_true", help="torch.compile our path's UNet (long warm-up)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls of our path (median reported)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak; looked up for H100/H200/A100")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own)")
    ap.add_argument("--skip-reference", action="store_true", help="time our path only")
    ap.add_argument("--out", type=Path, default=None, help="JSON result (default bench/measurements/sd_img2img_<device>.json)")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    # silences the per-copy "modules that should be kept in float32: []" notice of `.to(dtype)`
    diffusers.utils.logging.set_verbosity_error()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    size = args.size or (32 if args.tiny else 256)
    dtype = DTYPES[args.dtype or ("fp16" if cuda else "fp32")]
    n_ref = args.reference_images or args.candidates
    batch = args.batch or args.candidates
    n_images = args.prototypes * args.candidates
    name = device_name(device)
    peak = args.peak_tflops or (lookup_peak(name) if cuda else None)
    if cuda and peak is None:
        ap.error(f"no peak known for {name!r}: pass --peak-tflops (dense bf16 TFLOP/s)")

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    unet_cfg, vae_cfg = (UNET_TINY, VAE_TINY) if args.tiny else (UNET_SD15, VAE_SD15)
    text_dim = unet_cfg["cross_attention_dim"]
    factor = vae_factor(vae_cfg)
    if size % factor:
        ap.error(f"--size must be a multiple of {factor}")
    latent_hw = size // factor

    reference = build_pipe(unet_cfg, vae_cfg, device)
    ours = derive_pipe(reference, dtype, args.channels_last, args.compile)
    gen = torch.Generator().manual_seed(1)
    prototypes = torch.randn(args.prototypes, 4, latent_hw, latent_hw, generator=gen)
    cond = torch.randn(1, TEXT_TOKENS, text_dim, generator=gen)
    uncond = torch.randn(1, TEXT_TOKENS, text_dim, generator=gen)
    settings = dict(strength=args.strength, guidance=args.guidance, steps=args.steps)
    # the job's table: every (defective image, candidate) row, seeded as the workflow seeds them
    table = pd.DataFrame({"label": 0, "prototype_id": np.arange(args.prototypes), "image_id": [f"p{i}" for i in range(args.prototypes)]})
    table["latent"] = list(prototypes.reshape(args.prototypes, -1).numpy())
    table["latent_shape"] = [[4, latent_hw, latent_hw]] * args.prototypes
    rows = candidate_rows(table, table, args.candidates, seed=0)
    synthesis = {**settings, "batch_size": batch}

    def run(pipe, chunk):
        """One pipeline call on rows of the table."""
        return next(generate_chunks(PipeGenerator(pipe, cond, uncond), chunk, {**synthesis, "batch_size": len(chunk)}))[1]

    def run_all(pipe):
        """A pass over the whole table in chunks of `batch`; keeps the first reference images."""
        kept = [images[: max(0, n_ref - int(chunk.index[0]))].float().cpu()
                for chunk, images in generate_chunks(PipeGenerator(pipe, cond, uncond), rows, synthesis)]
        return torch.cat(kept)

    # forwards per image, counted on one batch-1 reference image (the same for both paths)
    counters = BatchCounter(reference.unet), BatchCounter(reference.vae.decoder)
    run(reference, rows.iloc[:1])
    unet_per_image, vae_per_image = (c.samples for c in counters)
    for c in counters:
        c.remove()
    unet_flops, vae_flops = forward_flops(reference, latent_hw, text_dim)
    flops_per_image = unet_per_image * unet_flops + vae_per_image * vae_flops

    # ours: one warm-up pass (cuDNN autotuning, compilation for each chunk shape), then timed passes
    run_all(ours)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        images = run_all(ours)
        sync()
        times.append(time.perf_counter() - t0)
    ours_s = statistics.median(times)
    result_ours = {
        "dtype": str(dtype).removeprefix("torch."),
        "batch": batch,
        "prototypes": args.prototypes,
        "images_per_pass": n_images,
        "calls_per_pass": -(-n_images // batch),
        "channels_last": args.channels_last,
        "compile": args.compile,
        "seconds_per_call": times,
        "images_per_s": n_images / ours_s,
        "achieved_tflops": flops_per_image * n_images / ours_s / 1e12,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
    }

    result_ref = None
    if not args.skip_reference:
        # reference: batch-1 fp32 loop, warmed up by the counting image above
        ref_images = []
        sync()
        t0 = time.perf_counter()
        for i in range(n_ref):
            ref_images.append(run(reference, rows.iloc[i : i + 1]))
        sync()
        ref_s = time.perf_counter() - t0
        both = min(n_ref, n_images)
        diff = (torch.cat(ref_images[:both]).float().cpu() - images[:both].float().cpu()).abs().max().item()
        result_ref = {
            "dtype": "float32",
            "batch": 1,
            "images": n_ref,
            "seconds": ref_s,
            "images_per_s": n_ref / ref_s,
            "achieved_tflops": flops_per_image * n_ref / ref_s / 1e12,
            "max_abs_diff_vs_ours": diff,
        }

    speedup = result_ours["images_per_s"] / result_ref["images_per_s"] if result_ref else None
    share = result_ours["achieved_tflops"] / peak if peak else None

    result = {
        "device": name,
        "device_type": device.type,
        "tiny": args.tiny,
        "note": "smoke test at tiny size, not a benchmark" if args.tiny else "SD v1.5 architecture, random weights",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else " ".join(["sd_img2img_speed.py", *argv]),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
                     "cuda": torch.version.cuda if cuda else None},
        "settings": {"image_size": size, "latent_size": latent_hw, "candidates": args.candidates,
                     "prototypes": args.prototypes, "batch": batch, **settings,
                     "scheduler": "PNDMScheduler (SD v1.5 config)", "text_embeddings": f"random ({TEXT_TOKENS}, {text_dim})"},
        "flops": {"unet_forward_batch1": unet_flops, "vae_decode_batch1": vae_flops,
                  "unet_forwards_per_image": unet_per_image, "vae_decodes_per_image": vae_per_image,
                  "per_image": flops_per_image},
        "ours": result_ours,
        "reference": result_ref,
        "speedup": speedup,
        "peak_tflops": peak,
        "peak_share": share,
        "targets": {"speedup_ge_10": None if speedup is None else speedup >= 10,
                    "peak_share_ge_0.35": None if share is None else share >= 0.35},
    }

    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") if cuda else "cpu"
    out = args.out or REPO / "bench" / "measurements" / f"sd_img2img_{slug}{'_tiny' if args.tiny else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"written: {out}")
    return result


def format_table(r: dict) -> str:
    rows = [f"device: {r['device']}{'  [tiny smoke test]' if r['tiny'] else ''}",
            f"{r['settings']['image_size']} px, {r['settings']['steps']} steps x strength {r['settings']['strength']}, "
            f"guidance {r['settings']['guidance']}, {r['flops']['unet_forwards_per_image']} UNet forwards per image, "
            f"{r['flops']['per_image'] / 1e12:.3f} TFLOP per image",
            f"ours: {r['settings'].get('prototypes', 1)} prototypes x {r['settings']['candidates']} candidates "
            f"in chunks of {r['ours']['batch']}",
            f"{'path':<12}{'dtype':<10}{'batch':>6}{'img/s':>10}{'TFLOP/s':>10}"]
    for key in ("ours", "reference"):
        x = r[key]
        if x:
            rows.append(f"{key:<12}{x['dtype']:<10}{x['batch']:>6}{x['images_per_s']:>10.3f}{x['achieved_tflops']:>10.3f}")
    if r["speedup"] is not None:
        rows.append(f"speed-up: {r['speedup']:.2f}x (target >= 10x); max |ours - reference| = {r['reference']['max_abs_diff_vs_ours']:.3g}")
    if r["peak_share"] is not None:
        rows.append(f"share of peak {r['peak_tflops']:.0f} TFLOP/s: {100 * r['peak_share']:.1f}% (target >= 35%)")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
