"""The generator and what it makes: the generator itself, the train images' latents, the
prototypes, the initial synthetic images and the candidates that replace defective ones."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import data, io
from ..cache import CacheStats, GeneratedImageCache
from ..device import image_seed, pick_device
from .classifiers import score_images

log = logging.getLogger("detdistill")


# --------------------------------------------------------------------------- generator
def prepare_generator(*, manifest_path, source_cfg: dict, image_size: int, generator_cfg: dict, out_dir) -> None:
    """The generator checkpoint `out_dir`, made by the backend `generator.backend` names from the
    train split (embedded: trains the small LDM; sd15: points at local Stable Diffusion weights,
    checked offline, and writes the prompt settings)."""
    from ..generators import BACKENDS

    backend = BACKENDS.get(generator_cfg.get("backend"), "generator.backend")
    manifest = data.train_split(pd.read_parquet(manifest_path))
    backend.prepare(train_manifest=manifest, source_cfg=source_cfg, image_size=image_size, generator_cfg=generator_cfg,
                    out_dir=out_dir)


def _load_generator(path, synthesis_cfg: dict | None = None):
    """The generator, with the `synthesis` section's speed settings when given (batch size, and for
    sd15 on CUDA: dtype, channels-last, compile)."""
    from ..generators import load_generator

    cfg = synthesis_cfg or {}
    return load_generator(
        path,
        pick_device(),
        batch_size=cfg.get("batch_size"),
        dtype=cfg.get("dtype"),
        channels_last=cfg.get("channels_last"),
        compile_unet=cfg.get("compile"),
    )


# --------------------------------------------------------------------------- latents
def encode_latents(*, manifest_path, source_cfg: dict, image_size: int, generator_dir, out_path, batch_size: int = 256) -> None:
    """Latent means of every *train* image, streamed in chunks so memory stays bounded."""
    generator = _load_generator(generator_dir)
    train = data.train_split(pd.read_parquet(manifest_path))
    latents = []
    chunks = data.image_chunks(train, source_cfg, image_size, batch_size)
    for images in tqdm(chunks, total=math.ceil(len(train) / batch_size), desc="encode", mininterval=5):
        # uint8 in: both backends' encode convert to [0, 1] themselves (a float copy here was a second one)
        latents.append(generator.encode(images).float().cpu().numpy())
    stacked = np.concatenate(latents)
    frame = train[["image_id", "label", "class_name"]].copy()
    frame["latent"] = list(stacked.reshape(len(stacked), -1))
    frame["latent_shape"] = [list(stacked.shape[1:])] * len(frame)
    io.write_parquet(frame, out_path)
    log.info("encoded %d train images to latents of shape %s", len(frame), stacked.shape[1:])


# --------------------------------------------------------------------------- prototypes
def compute_prototypes(*, latents_path, ipc: int, seed: int, n_init: int, out_path) -> None:
    from ..prototypes import kmeans_prototypes

    prototypes = kmeans_prototypes(pd.read_parquet(latents_path), ipc, seed, n_init)
    io.write_parquet(prototypes, out_path)
    log.info("prototypes: %d classes x IPC %d", prototypes.label.nunique(), ipc)


def _prototype_latents(rows: pd.DataFrame) -> torch.Tensor:
    shape = list(rows.latent_shape.iloc[0])
    return torch.from_numpy(data.latent_matrix(rows)).reshape(-1, *shape)


def generate_chunks(generator, rows: pd.DataFrame, synthesis_cfg: dict, desc: str = "generate"):
    """img2img for prototype rows (`label`, `seed`, `latent`, `latent_shape` columns) in chunks of
    `synthesis.batch_size` rows, whatever their class or prototype: yields (chunk, images) so only
    one chunk's images are held at a time.

    An image depends on its row only, not on the chunk it was made in: one seeded CPU generator
    per image, and every chunk padded to `batch_size` rows (its last row repeated, the extra images
    dropped). Kernels pick their algorithm by batch shape, so without the padding an image made
    in a short last chunk can differ in the last bits from the same image made in a full one
    (measured with the digits generator on the CPU: a batch of 1 against a batch of 8 moved 3 PNG
    values in 12 images). The image cache relies on it: a resumed or re-run job makes its images
    in other chunks than the first run. Cost: at most batch_size - 1 extra images per job."""
    batch_size = synthesis_cfg.get("batch_size", 64)
    for chunk in tqdm(list(data.row_chunks(rows, batch_size)), desc=desc, mininterval=5):
        padded = chunk.iloc[np.minimum(np.arange(batch_size), len(chunk) - 1)]
        images = generator.img2img(
            _prototype_latents(padded),
            padded.label.tolist(),
            padded.seed.tolist(),
            strength=synthesis_cfg["strength"],
            guidance=synthesis_cfg["guidance"],
            steps=synthesis_cfg["steps"],
        )
        images = images[: len(chunk)]
        output_size = synthesis_cfg.get("output_size")
        if output_size and images.shape[-1] != output_size:
            # generated at generator.image_size, stored at the dataset's (antialiased, as real images are loaded)
            images = torch.nn.functional.interpolate(images.float(), size=(output_size, output_size), mode="bilinear",
                                                     align_corners=False, antialias=True).clamp(0, 1)
        yield chunk, images


class _BackgroundWriter:
    """Runs one chunk's PNG writes on a thread while the next chunk is generated: encoding a
    256 px PNG costs 15-30 ms of one core, ~30 s for 2,000 candidates, during which the GPU would
    idle (on the H200 the candidates job made 13.9 images/s against the benchmark's 17.05 without
    writes). At most `pending` chunks wait, so memory stays bounded; leaving the block waits for
    every write and raises the first failure."""

    def __init__(self, pending: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="png-writer")
        self.pending = pending
        self.futures = []

    def submit(self, function, *args) -> None:
        while len(self.futures) >= self.pending:
            self.futures.pop(0).result()
        self.futures.append(self.pool.submit(function, *args))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        try:
            for future in self.futures:
                future.result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _write_generated(generator_dir, rows: pd.DataFrame, names: list[str], synthesis_cfg: dict, folder: Path, desc: str,
                     cache_dir=None) -> CacheStats:
    """Write the rows' images as PNGs `folder / name`. With `cache_dir` (the dataset's image
    store, `detdistill.cache`), rows whose image is stored are copied from it and only the others
    are generated, each stored as soon as its chunk is done, so a killed job keeps its finished
    chunks; without, every row is generated. The generator is loaded only if something is to be
    generated."""
    rows = rows.assign(file_name=names)
    cache = GeneratedImageCache(cache_dir, generator_dir, synthesis_cfg, pick_device()) if cache_dir else None
    if cache is None:
        todo = rows
    else:
        rows["cache_key"] = [cache.key(v, shape, y, seed) for v, shape, y, seed in zip(rows.latent, rows.latent_shape, rows.label, rows.seed)]
        todo = rows[~rows.cache_key.map(cache.has)].drop_duplicates("cache_key")
    if len(todo):
        generator = _load_generator(generator_dir, synthesis_cfg)

        def write(chunk: pd.DataFrame, images: torch.Tensor) -> None:
            for image, row in zip(images, chunk.itertuples()):
                if cache is None:
                    io.write_png(image, folder / row.file_name)
                else:
                    cache.put(row.cache_key, image)

        with _BackgroundWriter() as writer:
            for chunk, images in generate_chunks(generator, todo, synthesis_cfg, desc):
                writer.submit(write, chunk, images.cpu())
    if cache is not None:
        for key, name in zip(rows.cache_key, rows.file_name):
            cache.copy_to(key, folder / name)
    stats = CacheStats(reused=len(rows) - len(todo), generated=len(todo))
    log.info("%s: %d images, %d reused from the image cache %s, %d generated", desc, len(rows), stats.reused, cache_dir, stats.generated)
    return stats


# --------------------------------------------------------------------------- initial set
def _job_labels(labels) -> list[int]:
    """The classes of one job: an int or a list of ints (`synthesis.classes_per_job` of them)."""
    return [int(labels)] if np.ndim(labels) == 0 else sorted(int(y) for y in labels)


def synthesize_initial(*, prototypes_path, labels, generator_dir, synthesis_cfg: dict, seed: int, out_dir, cache_dir=None) -> None:
    """The initial synthetic images of one or more classes: one per prototype, seeded per image,
    generated in chunks of `synthesis.batch_size` across the classes (through the image cache
    `cache_dir` when given, see `_write_generated`)."""
    labels = _job_labels(labels)
    prototypes = pd.read_parquet(prototypes_path)
    rows = prototypes[prototypes.label.isin(labels)].sort_values(["label", "prototype_id"]).reset_index(drop=True)
    missing = sorted(set(labels) - set(rows.label))
    if missing:
        raise ValueError(f"{prototypes_path}: no prototypes for classes {missing}")
    rows["seed"] = [image_seed(seed, y, p, 0) for y, p in zip(rows.label, rows.prototype_id)]
    image_ids = [f"c{y}-p{p:03d}" for y, p in zip(rows.label, rows.prototype_id)]
    names = [f"{i}.png" for i in image_ids]
    out_dir = Path(out_dir)
    manifest = pd.DataFrame(
        {
            "image_id": image_ids,
            "label": rows.label.to_numpy(),
            "class_name": rows.class_name.to_numpy(),
            "prototype_id": rows.prototype_id.to_numpy(),
            "seed": rows.seed.to_numpy(),
            "image_path": [str(out_dir / n) for n in names],
        }
    )
    with io.atomic_dir(out_dir) as staging:
        _write_generated(generator_dir, rows, names, synthesis_cfg, staging, f"initial classes {labels}", cache_dir)
        io.write_parquet(manifest, staging / "manifest.parquet")
    log.info("classes %s: %d initial images", labels, len(manifest))


# --------------------------------------------------------------------------- candidates
CANDIDATE_COLUMNS = ["source_image_id", "label", "prototype_id", "candidate_index", "seed", "image_path"]


def candidate_rows(defective: pd.DataFrame, prototypes: pd.DataFrame, n_candidates: int, seed: int) -> pd.DataFrame:
    """One row per (defective image, candidate), in (label, prototype, candidate) order, with the
    prototype's latent; seeds disjoint from the initial images' (last key 0)."""
    defective = defective.sort_values(["label", "prototype_id"])
    n = len(defective)
    rows = pd.DataFrame(
        {
            "source_image_id": np.repeat(defective.image_id.to_numpy(), n_candidates),
            "label": np.repeat(defective.label.to_numpy(dtype=np.int64), n_candidates),
            "prototype_id": np.repeat(defective.prototype_id.to_numpy(dtype=np.int64), n_candidates),
            "candidate_index": np.tile(np.arange(n_candidates, dtype=np.int64), n),
        }
    )
    rows["seed"] = np.array(
        [image_seed(seed, y, p, 1 + c) for y, p, c in zip(rows.label, rows.prototype_id, rows.candidate_index)], dtype=np.int64
    )
    latents = prototypes[["label", "prototype_id", "latent", "latent_shape"]]
    return rows.merge(latents, on=["label", "prototype_id"], how="left", validate="many_to_one")


def generate_candidates(*, anomalies_path, prototypes_path, labels, generator_dir, detector_path, synthesis_cfg: dict, n_candidates: int, seed: int,
                        out_dir, cache_dir=None) -> None:
    """`n_candidates` new images per defective image of one or more classes, from its prototype,
    scored. All (defective image, candidate) rows of the job are generated in chunks of
    `synthesis.batch_size`, across images and classes; with `cache_dir`, only those not made
    before (by an earlier beta, or a killed run) are generated (see `_write_generated`)."""
    labels = _job_labels(labels)
    anomalies = pd.read_parquet(anomalies_path)
    defective = anomalies[anomalies.label.isin(labels) & anomalies.defective]
    rows = candidate_rows(defective, pd.read_parquet(prototypes_path), n_candidates, seed)
    out_dir = Path(out_dir)
    names = [f"{i}-cand{c:02d}.png" for i, c in zip(rows.source_image_id, rows.candidate_index)]
    with io.atomic_dir(out_dir) as staging:
        if len(rows):
            _write_generated(generator_dir, rows, names, synthesis_cfg, staging, f"candidates classes {labels}", cache_dir)
            # score with the real paths resolved inside the staging folder
            staged = rows.assign(image_path=[str(staging / n) for n in names])[CANDIDATE_COLUMNS]
            table = score_images(detector_path, staged).assign(image_path=[str(out_dir / n) for n in names])
        else:
            table = pd.DataFrame(columns=CANDIDATE_COLUMNS).assign(
                predicted=pd.Series(dtype="int64"), p_target=pd.Series(dtype="float32"), feature=pd.Series(dtype=object)
            )
        io.write_parquet(table, staging / "manifest.parquet")
    log.info("classes %s: %d candidates for %d defective images", labels, len(table), len(defective))
