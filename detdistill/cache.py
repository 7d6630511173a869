"""Content-addressed store of generated images, shared by a dataset's synthesis and candidate jobs.

An image is stored as `<folder>/<key[:2]>/<key>.png`, where the key is the SHA-256 of everything
that decides its bytes: the generator's files as its backend declares them (weights, configs,
`generator.json`; for sd15 also the Stable Diffusion files it loads), the prototype latent's bytes, the label, the seed,
strength, guidance, steps, the batch shape it was computed in (`synthesis.batch_size`: chunks are
padded to it, see `stages.generation.generate_chunks`), and the runtime (device, CPU instruction
set or GPU model, precision settings on CUDA, torch and diffusers versions). So the store never returns an
image that generating it here would not give byte for byte, and a job reuses what an earlier job
made: a changed beta or top-k generates only for newly flagged prototypes, and a killed job's
finished chunks are not made again.

The store is a side store, not an artifact: Snakemake does not know it (no rule declares it, so
no re-run deletes it), and deleting it at any time between runs only costs regeneration.
Entries are written atomically, each on its own; a killed writer can leave a hidden
`.<key>.png.tmp-*` file there, which no look-up reads (these are not removed by the next writer,
as two jobs may write the same key at once).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import io

#: bump when the key or the stored bytes change meaning
CACHE_FORMAT = 1


def file_sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def generator_files(generator_dir) -> dict[str, Path]:
    """The files that make a generator, by a stable name, as its backend declares them
    (`GeneratorBackend.key_files`): every file of its folder, plus for sd15 the weight files its
    spec loads (they stay outside the folder)."""
    from .generators import BACKENDS

    folder = Path(generator_dir)
    meta_path = folder / "generator.json"
    meta = json.loads(meta_path.read_text())
    return BACKENDS.get(meta.get("backend"), str(meta_path)).key_files(folder, meta)


def generator_identity(generator_dir) -> str:
    """SHA-256 over the generator's files' names and contents (a few seconds for Stable Diffusion's
    4 GB, once per job)."""
    digests = {name: file_sha256(path) for name, path in generator_files(generator_dir).items()}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def runtime_identity(device: torch.device, synthesis_cfg: dict) -> dict:
    """What besides the inputs changes the generated floats: the device kind and model, the CPU's
    vector instruction set, library versions, and on CUDA the precision and compile settings
    (the CPU path ignores them: float32, uncompiled)."""
    import diffusers

    runtime = {"device": device.type, "machine": platform.machine(), "torch": torch.__version__, "diffusers": diffusers.__version__}
    if device.type == "cuda":
        runtime["gpu"] = torch.cuda.get_device_name(device)
        runtime.update({k: synthesis_cfg.get(k) for k in ("dtype", "channels_last", "compile")})
    else:
        runtime["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return runtime


@dataclass
class CacheStats:
    reused: int = 0
    generated: int = 0


class GeneratedImageCache:
    """Look-up and storage of generated PNGs by content key (see the module docstring)."""

    def __init__(self, folder, generator_dir, synthesis_cfg: dict, device: torch.device):
        self.folder = Path(folder)
        self._base = {
            "format": CACHE_FORMAT,
            "generator": generator_identity(generator_dir),
            "runtime": runtime_identity(device, synthesis_cfg),
            "strength": float(synthesis_cfg["strength"]),
            "guidance": float(synthesis_cfg["guidance"]),
            "steps": int(synthesis_cfg["steps"]),
            "batch_size": int(synthesis_cfg.get("batch_size", 64)),
        }
        if synthesis_cfg.get("output_size"):  # generated at another size than stored (generator.image_size)
            self._base["output_size"] = int(synthesis_cfg["output_size"])

    def key(self, latent, latent_shape, label: int, seed: int) -> str:
        latent = np.ascontiguousarray(np.asarray(latent, dtype=np.float32))
        record = {
            **self._base,
            "latent_sha256": hashlib.sha256(latent.tobytes()).hexdigest(),
            "latent_shape": [int(s) for s in latent_shape],
            "label": int(label),
            "seed": int(seed),
        }
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.png"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, key: str, image) -> None:
        # owner=False: another job may be writing the same key (identical bytes) right now
        io.write_png(image, self.path(key), owner=False)

    def copy_to(self, key: str, dest) -> None:
        shutil.copyfile(self.path(key), dest)
