#!/usr/bin/env python
"""What the decoded-pixel store (detdistill/pixel_cache.py) saves a job: seconds to load a split
of an image-file dataset by decoding it (as every job did before the store, and as the first
job still does: decode + store) against reading it back (every later job), one job's threads.

Loads through `detdistill.data.load_images`, the function every training, evaluation and scoring
job calls, and checks that the read-back bytes equal the decoded ones. Default: the CIFAR-10
JPEG tree that config/bench/cifar10_embedded.yaml reads (`mkdir -p data && tar xzf
../shared/data/cifar10-jpeg.tar.gz -C data/`), at the sizes its jobs load (32 px: detector, judge,
latents; 16 px: evaluations). The store is a fresh temporary folder, so nothing is reused from
earlier runs; the page cache is warm for the image files (a job's decoding reads them from the OS
cache too, after the first).

    python bench/pixel_cache.py [--root data/cifar10] [--sizes 32 16] [--threads 1]

`--imagenette-like N` instead writes N train and N * 3925 // 9469 val JPEGs of ImageNette's typical
shape (500 x 375, quality 90: CIFAR-10 training images upscaled, so they compress like photos)
into a temporary imagenette2-style folder and loads them at 256 px; the per-image seconds are then
projected to ImageNette's 9,469 / 3,925 images (labelled projected).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from detdistill import data, pixel_cache
from detdistill.testing.machine import machine, versions
from detdistill.testing.workflow_run import package_search_path

REPO = Path(__file__).resolve().parents[1]


def timed(function):
    start = time.perf_counter()
    out = function()
    return out, time.perf_counter() - start


def read_in_new_process(frame, source_cfg: dict, size: int, store: Path):
    """The rows read back by a fresh process, as a later job reads them (its own memory, nothing
    warm but the OS page cache; torchvision imported, as in every job), and the seconds its
    `load_images` took."""
    with tempfile.TemporaryDirectory() as folder:
        rows, out = Path(folder) / "rows.parquet", Path(folder) / "hit.pt"
        frame.to_parquet(rows)
        code = ("import json, sys, time, pandas as pd, torch;"
                "import PIL, torchvision; from detdistill import data, pixel_cache; torch.set_num_threads(int(sys.argv[5]));"
                "pixel_cache.configure(sys.argv[3], min_images=1); frame = pd.read_parquet(sys.argv[1]);"
                "start = time.perf_counter(); images = data.load_images(frame, json.loads(sys.argv[2]), int(sys.argv[4]));"
                "seconds = time.perf_counter() - start; torch.save({'images': images, 'seconds': seconds}, sys.argv[6])")
        # the detdistill this script imported, in the new process too
        subprocess.run([sys.executable, "-c", code, str(rows), json.dumps(source_cfg), str(store), str(size),
                        str(torch.get_num_threads()), str(out)], check=True, env=package_search_path())
        result = torch.load(out, weights_only=True)
    return result["images"], result["seconds"]


def measure(manifest, source_cfg: dict, sizes, store: Path) -> list[dict]:
    rows = []
    for split in ("train", "test"):
        frame = manifest[manifest.split == split].reset_index(drop=True)
        for size in sizes:
            pixel_cache.configure(None)
            direct, decode_s = timed(lambda f=frame, s=size: data.load_images(f, source_cfg, s))
            pixel_cache.configure(store, min_images=1)  # every split, however small the sample
            _, miss_s = timed(lambda f=frame, s=size: data.load_images(f, source_cfg, s))
            os.sync()  # a later job reads a written-back entry, not one whose pages are still being written
            hit, hit_s = read_in_new_process(frame, source_cfg, size, store)
            _, again_s = read_in_new_process(frame, source_cfg, size, store)  # the file system's first read of a new file is slower
            if not torch.equal(hit, direct):
                raise AssertionError(f"{split} at {size} px: the store's bytes differ from decoding's")
            entry = next(store.glob(f"{size}px-*.safetensors"), None)
            rows.append({"split": split, "images": len(frame), "image_size": size, "decode_s": round(decode_s, 2),
                         "decode_img_per_s": round(len(frame) / decode_s), "first_job_decode_and_store_s": round(miss_s, 2),
                         "next_job_read_s": round(hit_s, 3), "later_jobs_read_s": round(again_s, 3),
                         "speed_up_next": round(decode_s / hit_s, 1), "speed_up_later": round(decode_s / again_s, 1),
                         "stored_mib": round(sum(p.stat().st_size for p in store.glob(f"{size}px-*")) / 2**20, 1) if entry else 0})
            for path in store.glob("*"):
                path.unlink()
    return rows


def make_imagenette_like(root: Path, train: int, cifar_root: Path) -> Path:
    """root/{train,val}/<class>/*.JPEG at 500 x 375 from upscaled CIFAR-10 training JPEGs."""
    from PIL import Image

    classes = sorted(p for p in (cifar_root / "train").iterdir() if p.is_dir())
    counts = {"train": train, "val": max(len(classes), train * 3925 // 9469)}
    taken = 0
    for split, count in counts.items():
        for i in range(count):  # the classes in turn, so every split has every class
            source = sorted(classes[i % len(classes)].glob("*.jpg"))[taken + i // len(classes)]
            folder = root / split / source.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            with Image.open(source) as image:
                image.convert("RGB").resize((500, 375), Image.BICUBIC).save(folder / f"{i:05d}.JPEG", quality=90)
        taken += count // len(classes) + 1
    return root


def markdown(rows: list[dict], meta: dict) -> str:
    import pandas as pd

    lines = [f"# Decoded-pixel store: one load of a split, decoded vs read back ({meta['date']})", "",
             f"- machine: {meta['machine']}", f"- versions: {meta['versions']}", f"- threads: {meta['threads']}",
             f"- load average when done (1, 5, 15 min; other processes slow both columns): {meta['load_average_1_5_15_min']}",
             f"- data: {meta['root']}", f"- command: `{meta['command']}`", "",
             "`decode_s`: `data.load_images` with the store off (every job before the store); "
             "`first_job_decode_and_store_s`: the first job that loads these files at this size; "
             "`next_job_read_s`: the next job (a new process; this file system's first read of a newly written "
             "file is slower), `later_jobs_read_s`: a job after it (the bytes checked equal to decoding's).", "",
             pd.DataFrame(rows).to_markdown(index=False), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/cifar10")
    parser.add_argument("--kind", default="cifar10")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 16])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--imagenette-like", type=int, default=0, metavar="N")
    parser.add_argument("--out", default=None, help="default: bench/measurements/pixel_cache_<cifar10|imagenette_like>")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "imagenette_like" if args.imagenette_like else "cifar10"
    args.out = args.out or str(REPO / "bench" / "measurements" / f"pixel_cache_{name}")
    with tempfile.TemporaryDirectory() as folder:
        if args.imagenette_like:
            root = make_imagenette_like(Path(folder) / "imagenette2", args.imagenette_like, Path(args.root))
            source_cfg = {"kind": "imagefolder", "root": str(root), "splits": {"train": "train", "test": "val"}}
            args.sizes, described = [256], f"{args.imagenette_like} train JPEGs at 500 x 375 (upscaled CIFAR-10), imagefolder"
        else:
            source_cfg = {"kind": args.kind, "root": args.root, "classes_file": str(REPO / "resources" / "classes" / "cifar10.csv")}
            described = f"{args.root} ({args.kind})"
        manifest = data.build_manifest(source_cfg, seed=0)
        store = Path(folder) / "store"
        store.mkdir()
        rows = measure(manifest, source_cfg, args.sizes, store)
    if args.imagenette_like:
        for row in rows:  # the same per-image seconds at ImageNette's split sizes
            full = 9469 if row["split"] == "train" else 3925
            row["projected_imagenette_decode_s"] = round(row["decode_s"] / row["images"] * full, 1)
            row["projected_imagenette_read_s"] = round(row["later_jobs_read_s"] / row["images"] * full, 2)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine()[0], "versions": versions(), "threads": args.threads,
            "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
            "root": described, "kind": source_cfg["kind"], "command": "python " + " ".join(sys.argv)}
    Path(args.out + ".json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
