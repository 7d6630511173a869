"""What the engine benchmarks share (bench/engine_throughput.py, engine_profile.py,
engine_concurrency.py): the workflow's training shapes, model building, device sync, the head of
their reports and the protocol variants the profile times."""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path

import torch

from detdistill.models import build_model

from .machine import cpu_description

#: name -> (evaluation train config, load size, crop size, width, [(label, set size, models)])
PRESETS = {
    "digits": (
        dict(batch_size=32, optimizer="sgd", lr=0.01, schedule="multistep", cutmix_alpha=1.0,
             crop_scale=[0.5, 1.0], flip=False),
        16, 16, 32,
        [("ipc10", 100, ["convnet", "resnetap10", "resnet18"]), ("full", 1437, ["convnet"])],
    ),
    "imagenette": (
        dict(batch_size=64, optimizer="sgd", lr=0.01, schedule="multistep", cutmix_alpha=1.0,
             crop_scale=[0.5, 1.0], color_jitter=0.4, flip=True),
        256, 224, 64,
        [("ipc10", 100, ["resnetap10", "convnet", "resnet18"]), ("full", 9469, ["resnet18"])],
    ),
}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of `images` (the engine's last batch may be short)."""
    return -(-images // min(batch_size, images))


def report_header(script: str, argv: list[str] | None, device: torch.device) -> dict:
    """What every engine benchmark's JSON starts with: the command as typed (quoted), the date, the
    device (the GPU's name, or the CPU with torch's thread count) and the library versions."""
    import kornia

    return {
        "command": shlex.join(["python", f"bench/{script}", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"CPU ({cpu_description()}; {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "kornia": kornia.__version__,
    }


def write_report(out: Path, report: dict, title: str, what: str) -> list[str]:
    """Write `report` as JSON to `out`; return the first lines of its markdown (title, command,
    date, versions and `what` was measured), for the caller's tables to follow."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return [f"# {title}: {report['device']}", "",
            f"`{report['command']}` ({report['date']}; torch {report['torch']}, kornia {report['kornia']}); {what}", ""]


def build_models(name: str, seeds: list[int], crop: int, width: int) -> list:
    """One freshly initialised model per seed (10 classes), seeded as the workflow seeds its runs."""
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        out.append(build_model(name, 10, crop, width))
    return out


#: protocol variants: what is taken away from the imagenette preset's evaluation protocol
VARIANTS = {
    "protocol": {},
    "no colour jitter": {"color_jitter": 0.0},
    "no augmentation, no CutMix": {"crop_scale": None, "color_jitter": 0.0, "flip": False, "cutmix_alpha": 0.0},
    # the engine's `train.compile` (torch.compile of the model's forward; AOTAutograd compiles the
    # backward too), plain and replayed as CUDA graphs: the full protocol, augmentation and
    # optimizer left eager
    "model compiled": {"compile": True},
    "model compiled, CUDA graphs": {"compile": "cuda-graphs"},
}
#: what runs without --variants: the eager engine's protocol and what it is without (no compilation)
DEFAULT_VARIANTS = ["protocol", "no colour jitter", "no augmentation, no CutMix"]


def parse_variants(text: str) -> list[str]:
    """Comma-separated variant names, in the order given; a name may itself hold a comma, so the
    longest known name at each position wins."""
    parts, chosen = [p.strip() for p in text.split(",")], []
    while parts:
        for n in range(len(parts), 0, -1):
            if ", ".join(parts[:n]) in VARIANTS:
                chosen.append(", ".join(parts[:n]))
                parts = parts[n:]
                break
        else:
            raise ValueError(f"--variants: unknown {parts[0]!r}; choose from: {'; '.join(VARIANTS)}")
    return chosen
