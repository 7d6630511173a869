"""One description of the machine and its library versions for every benchmark's record.

The same code and command ran the embedded default in 389 s on one 2-core VM and 1,280 s on
another (bench/measurements/digits_default.md), and both had recorded themselves as "x86_64, 2
cores". So a figure names its CPU by model name, family and model number (AMD and Intel reuse
one model name across generations: "AMD EPYC" was a 2017 Zen 1 on one VM and an AVX-512 part on
the other) and by the widest vector instructions it has, which decide CPU training speed here.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# Widest first: the first flag the CPU has names its vector instructions.
VECTOR_FLAGS = (("amx_tile", "AMX"), ("avx512_bf16", "AVX-512 with BF16"), ("avx512f", "AVX-512"),
                ("avx2", "AVX2"), ("avx", "AVX"))


def _first_processor(cpuinfo_text: str) -> dict[str, str]:
    """The fields of the first processor block of /proc/cpuinfo (every core repeats them)."""
    fields: dict[str, str] = {}
    for line in cpuinfo_text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_description(cpuinfo_text: str | None = None, cores: int | None = None) -> str:
    """For example "AMD EPYC (family 23, model 1; AVX2), 2 cores". Where /proc/cpuinfo is absent
    (not Linux), the platform's processor or machine name."""
    cores = os.cpu_count() if cores is None else cores
    if cpuinfo_text is None:
        cpuinfo_text = CPUINFO.read_text() if CPUINFO.is_file() else ""
    fields = _first_processor(cpuinfo_text)
    name = fields.get("model name") or platform.processor() or platform.machine()
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']}, model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    vector = next((label for flag, label in VECTOR_FLAGS if flag in flags), None)
    if vector:
        details.append(vector)
    described = f"{name} ({'; '.join(details)})" if details else name
    return f"{described}, {cores} cores"


def machine() -> tuple[str, str]:
    """(description, file-name slug): the GPU's name, else the CPU's."""
    import torch

    cpu = cpu_description()
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        return f"{gpu} (CUDA {torch.version.cuda}); {cpu}", re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return f"CPU only: {cpu}", "cpu"


def versions() -> dict[str, str | None]:
    """Python's version and those of the libraries the figures depend on (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "kornia", "kornia_rs", "snakemake"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
