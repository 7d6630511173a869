"""One function per workflow stage. Rules' scripts call these with paths and plain config dicts;
tests call them directly. Every output is written atomically."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import data, io
from .cache import CacheStats, GeneratedImageCache
from .device import image_seed, pick_device, seed_everything

log = logging.getLogger("detdistill")


def label_tensor(frame: pd.DataFrame) -> torch.Tensor:
    """The `label` column as an int64 tensor (a copy: parquet-backed arrays are read-only)."""
    return torch.tensor(frame.label.to_numpy(), dtype=torch.long)


def _train_split(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest[manifest.split == "train"].reset_index(drop=True)


def _chunks(frame: pd.DataFrame, size: int):
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


# --------------------------------------------------------------------------- 1. data
def prepare_data(source_cfg: dict, seed: int, out_manifest, threads: int = 1) -> None:
    """The manifest of every image, written only once each image file has been decoded."""
    manifest = data.build_manifest(source_cfg, seed)
    data.check_source_images(manifest, source_cfg, threads)
    io.write_parquet(manifest, out_manifest)
    counts = manifest.groupby(["split"]).size().to_dict()
    log.info("manifest: %d images, %s, %d classes", len(manifest), counts, manifest.label.nunique())


# --------------------------------------------------------------------------- 2. generator
def prepare_generator(manifest_path, source_cfg: dict, image_size: int, generator_cfg: dict, out_dir) -> None:
    """embedded: train the small LDM on the train split. sd15: point at local Stable Diffusion
    weights (checked offline) and write the prompt settings."""
    manifest = _train_split(pd.read_parquet(manifest_path))
    backend = generator_cfg["backend"]
    if backend == "sd15":
        from .generators.sd15 import write_generator_spec

        # keys left out of the config keep write_generator_spec's defaults (one place for them)
        optional = {k: generator_cfg[k] for k in ("prompt_template", "negative_prompt", "scheduler") if k in generator_cfg}
        write_generator_spec(
            out_dir, model=generator_cfg["model"], class_names=data.class_names(manifest), image_size=image_size, **optional
        )
        return
    from .generators.embedded import train_embedded_generator

    images = data.load_images(manifest, source_cfg, image_size)
    labels = label_tensor(manifest)
    train_embedded_generator(
        images, labels, data.class_names(manifest), generator_cfg["train"], out_dir, pick_device(), log=log.info
    )


def _load_generator(path, synthesis_cfg: dict | None = None):
    """The generator, with the `synthesis` section's speed settings when given (batch size, and for
    sd15 on CUDA: dtype, channels-last, compile)."""
    from .generators import load_generator

    cfg = synthesis_cfg or {}
    return load_generator(
        path,
        pick_device(),
        batch_size=cfg.get("batch_size"),
        dtype=cfg.get("dtype"),
        channels_last=cfg.get("channels_last"),
        compile_unet=cfg.get("compile"),
    )


# --------------------------------------------------------------------------- 3. latents
def encode_latents(manifest_path, source_cfg: dict, image_size: int, generator_dir, out_path, batch_size: int = 256) -> None:
    """Latent means of every *train* image, streamed in chunks so memory stays bounded."""
    generator = _load_generator(generator_dir)
    train = _train_split(pd.read_parquet(manifest_path))
    latents = []
    for chunk in tqdm(list(_chunks(train, batch_size)), desc="encode", mininterval=5):
        images = data.load_images(chunk, source_cfg, image_size).float().div(255)
        latents.append(generator.encode(images).float().cpu().numpy())
    stacked = np.concatenate(latents)
    frame = train[["image_id", "label", "class_name"]].copy()
    frame["latent"] = list(stacked.reshape(len(stacked), -1))
    frame["latent_shape"] = [list(stacked.shape[1:])] * len(frame)
    io.write_parquet(frame, out_path)
    log.info("encoded %d train images to latents of shape %s", len(frame), stacked.shape[1:])


# --------------------------------------------------------------------------- 4. prototypes
def compute_prototypes(latents_path, ipc: int, seed: int, n_init: int, out_path) -> None:
    from .prototypes import compute_prototypes as kmeans_prototypes

    prototypes = kmeans_prototypes(pd.read_parquet(latents_path), ipc, seed, n_init)
    io.write_parquet(prototypes, out_path)
    log.info("prototypes: %d classes x IPC %d", prototypes.label.nunique(), ipc)


def _prototype_latents(rows: pd.DataFrame) -> torch.Tensor:
    shape = list(rows.latent_shape.iloc[0])
    return torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32) for v in rows.latent])).reshape(-1, *shape)


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
    for chunk in tqdm(list(_chunks(rows, batch_size)), desc=desc, mininterval=5):
        padded = chunk.iloc[np.minimum(np.arange(batch_size), len(chunk) - 1)]
        images = generator.img2img(
            _prototype_latents(padded),
            padded.label.tolist(),
            padded.seed.tolist(),
            strength=synthesis_cfg["strength"],
            guidance=synthesis_cfg["guidance"],
            steps=synthesis_cfg["steps"],
        )
        yield chunk, images[: len(chunk)]


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
        for chunk, images in generate_chunks(generator, todo, synthesis_cfg, desc):
            for image, row in zip(images, chunk.itertuples()):
                if cache is None:
                    io.write_png(image, folder / row.file_name)
                else:
                    cache.put(row.cache_key, image)
    if cache is not None:
        for key, name in zip(rows.cache_key, rows.file_name):
            cache.copy_to(key, folder / name)
    stats = CacheStats(reused=len(rows) - len(todo), generated=len(todo))
    log.info("%s: %d images, %d reused from the image cache %s, %d generated", desc, len(rows), stats.reused, cache_dir, stats.generated)
    return stats


# --------------------------------------------------------------------------- 5. initial set
def _labels(labels) -> list[int]:
    """The classes of one job: an int or a list of ints (`synthesis.classes_per_job` of them)."""
    return [int(labels)] if np.ndim(labels) == 0 else sorted(int(y) for y in labels)


def synthesize_initial(prototypes_path, labels, generator_dir, synthesis_cfg: dict, seed: int, out_dir, cache_dir=None) -> None:
    """The initial synthetic images of one or more classes: one per prototype, seeded per image,
    generated in chunks of `synthesis.batch_size` across the classes (through the image cache
    `cache_dir` when given, see `_write_generated`)."""
    labels = _labels(labels)
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


def _natural_key(path: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def read_image_dirs(dirs) -> pd.DataFrame:
    """Concatenate the manifests of image folders (one per class group), in numeric folder order
    (part2 before part10), so rows come in label order however the classes were grouped."""
    frames = [pd.read_parquet(Path(d) / "manifest.parquet") for d in sorted(map(str, dirs), key=_natural_key)]
    return pd.concat(frames, ignore_index=True)


def load_png_images(paths, image_size: int | None = None) -> torch.Tensor:
    """uint8 (N,3,H,W) from PNG files, optionally resized (antialiased) to `image_size`."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    images = torch.stack([TF.pil_to_tensor(Image.open(p).convert("RGB")) for p in paths])
    if image_size is not None and images.shape[-1] != image_size:
        images = TF.resize(images, [image_size, image_size], antialias=True)
    return images


# --------------------------------------------------------------------------- 6. classifiers
REPORTED_BETAS = (0.5, 0.7, 0.9)


def train_classifier_stage(manifest_path, source_cfg: dict, image_size: int, clf_cfg: dict, out_model, out_metrics, out_test_scores) -> None:
    """Detector or judge: trained on the real train split only; test split only for its metrics."""
    from .models import build_model
    from .train import TrainConfig, accuracy, predict, save_model, train_classifier

    manifest = pd.read_parquet(manifest_path)
    train, test = _train_split(manifest), manifest[manifest.split == "test"]
    num_classes = manifest.label.nunique()
    cfg = TrainConfig.from_dict(clf_cfg["train"])
    seed_everything(cfg.seed)
    model = build_model(clf_cfg["model"], num_classes, image_size, clf_cfg.get("width", 64))
    device = pick_device()
    images, train_labels = data.load_images(train, source_cfg, image_size), label_tensor(train)
    history = train_classifier(model, images, train_labels, cfg, device, desc=clf_cfg["model"], log=log.info)
    test_images = data.load_images(test, source_cfg, image_size)
    test_labels = label_tensor(test)
    probs = predict(model, test_images, device)["probs"]
    p_target = probs.gather(1, test_labels[:, None]).squeeze(1)
    save_model(model, out_model, {"name": clf_cfg["model"], "num_classes": num_classes, "image_size": image_size, "width": clf_cfg.get("width", 64)})
    metrics = {
        "model": clf_cfg["model"],
        "train_images": len(train),
        "test_images": len(test),
        "test_accuracy": float((probs.argmax(1) == test_labels).float().mean()),
        "train_accuracy": accuracy(model, images, train_labels, device),
        # what a confidence threshold means for this model: the share of *real* test images it would flag
        "test_target_softmax_median": float(p_target.median()),
        "test_share_below_beta": {str(b): float((p_target < b).float().mean()) for b in REPORTED_BETAS},
        "final_loss": history[-1]["loss"] if history else None,
        "train_config": clf_cfg,
    }
    io.write_json(metrics, out_metrics)
    test_scores = test[["image_id", "label"]].assign(predicted=probs.argmax(1).numpy(), p_target=p_target.numpy())
    io.write_parquet(test_scores, out_test_scores)
    log.info("classifier %s: test accuracy %.4f", clf_cfg["model"], metrics["test_accuracy"])


#: images decoded at a time when scoring: bounds memory (10,000 candidates at 256 px would be 2 GB
#: at once); a multiple of `predict`'s batch of 256, so the model sees the batches one call would
SCORE_CHUNK = 1024


def _score(model_path, frame: pd.DataFrame, load_images=None, batch_size: int = SCORE_CHUNK) -> pd.DataFrame:
    """Add predicted, p_target and feature columns (detector view) to an image table. Images are
    read `batch_size` rows at a time by `load_images(rows)` (default: the PNGs at `image_path`)."""
    from .train import load_model, predict

    load_images = load_images or (lambda rows: load_png_images(rows.image_path))
    device = pick_device()
    model = load_model(model_path, device)
    outs = [predict(model, load_images(chunk), device) for chunk in _chunks(frame, batch_size)]
    probs = torch.cat([out["probs"] for out in outs])
    labels = label_tensor(frame)
    frame = frame.copy()
    frame["predicted"] = probs.argmax(1).numpy()
    frame["p_target"] = probs.gather(1, labels[:, None]).squeeze(1).numpy()
    frame["feature"] = list(torch.cat([out["features"] for out in outs]).numpy())
    return frame


def score_initial(initial_dirs, detector_path, out_path) -> None:
    io.write_parquet(_score(detector_path, read_image_dirs(initial_dirs)), out_path)


# --------------------------------------------------------------------------- 7. anomaly report
def flag_anomalies(scores: pd.DataFrame, beta: float | dict[int, float]) -> pd.DataFrame:
    """Defective: another class predicted, or target softmax below beta (one value, or one per
    label); the threshold each row met is its `beta` column (refinement reads it from there)."""
    frame = scores.copy()
    frame["beta"] = frame.label.map(beta).astype(np.float64) if isinstance(beta, dict) else float(beta)
    mismatch = frame.predicted != frame.label
    low = frame.p_target < frame.beta
    frame["reason"] = np.where(mismatch, "label_mismatch", np.where(low, "low_confidence", "normal"))
    frame["defective"] = mismatch | low
    return frame


def detect_anomalies(scores_path, detector_test_scores_path, beta: float, class_names: list[str], out_parquet, out_report,
                     *, beta_mode: str = "fixed", beta_quantile: float | None = None, validation_scores_path=None) -> None:
    """Flag the initial images with the fixed `beta` or, for a calibrated `beta_mode`, with betas
    read off the detector's validation scores (detdistill.calibration); the report then sets the
    fixed beta's verdicts beside them."""
    from .calibration import anomaly_betas
    from .report import FixedBetaComparison, anomaly_markdown

    scores, test_scores = pd.read_parquet(scores_path), pd.read_parquet(detector_test_scores_path)
    validation = pd.read_parquet(validation_scores_path) if validation_scores_path else None
    betas = anomaly_betas(beta, beta_mode, beta_quantile, range(len(class_names)), validation, str(validation_scores_path))
    frame = flag_anomalies(scores, betas)
    # the same rule applied to real held-out images: what beta means for this detector (reported only)
    real = flag_anomalies(test_scores, betas)
    fixed = None
    if beta_mode != "fixed":
        fixed = FixedBetaComparison(beta, beta_mode, beta_quantile, flag_anomalies(scores, beta), flag_anomalies(test_scores, beta),
                                    len(validation))
    io.write_parquet(frame, out_parquet)
    io.write_text(anomaly_markdown(frame, real, beta, class_names, Path(out_report).parent, fixed=fixed), out_report)
    log.info("anomalies: %d of %d flagged (beta mode %s, betas %s)", int(frame.defective.sum()), len(frame), beta_mode,
             sorted(set(betas.values())))


# --------------------------------------------------------------------------- 8. candidates
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


def generate_candidates(anomalies_path, prototypes_path, labels, generator_dir, detector_path, synthesis_cfg: dict, n_candidates: int, seed: int, out_dir,
                        cache_dir=None) -> None:
    """`n_candidates` new images per defective image of one or more classes, from its prototype,
    scored. All (defective image, candidate) rows of the job are generated in chunks of
    `synthesis.batch_size`, across images and classes; with `cache_dir`, only those not made
    before (by an earlier beta, or a killed run) are generated (see `_write_generated`)."""
    labels = _labels(labels)
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
            table = _score(detector_path, staged).assign(image_path=[str(out_dir / n) for n in names])
        else:
            table = pd.DataFrame(columns=CANDIDATE_COLUMNS).assign(
                predicted=pd.Series(dtype="int64"), p_target=pd.Series(dtype="float32"), feature=pd.Series(dtype=object)
            )
        io.write_parquet(table, staging / "manifest.parquet")
    log.info("classes %s: %d candidates for %d defective images", labels, len(table), len(defective))


# --------------------------------------------------------------------------- 9. sets
def build_refined_set(anomalies_path, candidate_dirs, method: str, top_k: int, out_path, out_png, *, normal_set: str = "all") -> None:
    """One set; conf_sim accepts candidates above the beta that flagged their class's images (the
    anomaly table's `beta` column: fixed or calibrated, never re-derived here)."""
    from .refine import refine_set
    from .report import contact_sheet

    anomalies = pd.read_parquet(anomalies_path)
    if "beta" not in anomalies.columns:
        raise data.DataError(f"{anomalies_path} has no `beta` column (written by an older version): delete it so the workflow re-runs detect_anomalies")
    betas = anomalies.groupby("label").beta.first().to_dict()
    candidates = read_image_dirs(candidate_dirs)
    result = refine_set(anomalies, candidates, method=method, beta=betas, top_k=top_k, normal_set=normal_set or "all")
    result["kind"] = "synthetic"
    io.write_parquet(result, out_path)
    contact_sheet(result, out_png)
    log.info("%s: replaced %d of %d images", method, int((result.origin == "candidate").sum()), len(result))


def _real_subset(train: pd.DataFrame, ipc: int, method: str, pick) -> pd.DataFrame:
    """`ipc` train rows per class, `pick(label, group)` giving their positions in the group."""
    data.check_ipc(train, ipc)
    parts = []
    for label, group in train.groupby("label", sort=True):
        parts.append(group.iloc[pick(int(label), group)])
    subset = pd.concat(parts, ignore_index=True)
    subset.insert(0, "method", method)
    subset["kind"] = "real"
    return subset


def select_random_subset(manifest_path, ipc: int, seed: int, out_path) -> None:
    """A seeded random subset of `ipc` real train images per class (not the first files on disk)."""
    rng = np.random.default_rng(seed)
    train = _train_split(pd.read_parquet(manifest_path))
    subset = _real_subset(train, ipc, "random", lambda label, group: np.sort(rng.choice(len(group), ipc, replace=False)))
    io.write_parquet(subset, out_path)


def score_train_features(manifest_path, source_cfg: dict, image_size: int, detector_path, out_path) -> None:
    """The detector's view (prediction, target softmax, penultimate feature) of every *train* image,
    streamed in chunks: the space the herding and k-center baselines select in."""
    train = _train_split(pd.read_parquet(manifest_path))
    scored = _score(detector_path, train, lambda rows: data.load_images(rows, source_cfg, image_size))
    io.write_parquet(scored[["image_id", "label", "predicted", "p_target", "feature"]], out_path)
    log.info("detector features of %d train images", len(scored))


def select_feature_subset(manifest_path, features_path, method: str, ipc: int, seed: int, out_path) -> None:
    """`ipc` real train images per class chosen by herding or k-center in the detector's feature
    space (detdistill.baselines), in pick order (`selection_rank`)."""
    from .baselines import select

    train = _train_split(pd.read_parquet(manifest_path))
    features = pd.read_parquet(features_path, columns=["image_id", "feature"])
    if set(features.image_id) != set(train.image_id):
        raise data.DataError(
            f"{features_path} does not score the train split of {manifest_path}: delete it so the workflow re-scores"
        )
    train = train.merge(features, on="image_id", how="left", validate="one_to_one")

    def pick(label: int, group: pd.DataFrame) -> np.ndarray:
        return select(np.stack(group.feature.to_numpy()), ipc, method, seed, label)

    subset = _real_subset(train, ipc, method, pick).drop(columns="feature")
    subset["selection_rank"] = subset.groupby("label").cumcount()
    io.write_parquet(subset, out_path)
    log.info("%s: %d real train images, IPC %d", method, len(subset), ipc)


def load_set_images(set_frame: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
    if (set_frame.kind == "real").all():
        return data.load_images(set_frame, source_cfg, image_size)
    return load_png_images(set_frame.image_path, image_size)


# --------------------------------------------------------------------------- 10. evaluation
def epochs_for(eval_cfg: dict, ipc: int | None, model: str) -> int:
    """Minimax-style epochs by IPC: `epochs_by_ipc` is a list of [max IPC, epochs] pairs, the first
    pair whose max IPC >= IPC applies (else the last), times `epoch_scale`; without a table,
    `train.epochs`. The full-data run (ipc None) uses `full_epochs`. `model_epoch_scale` then
    shortens costly models to fit a time budget (reported with the results)."""
    if ipc is None:
        epochs = eval_cfg.get("full_epochs") or eval_cfg["train"]["epochs"]
    elif eval_cfg.get("epochs_by_ipc"):
        table = sorted(eval_cfg["epochs_by_ipc"])
        epochs = next((e for max_ipc, e in table if ipc <= max_ipc), table[-1][1]) * eval_cfg.get("epoch_scale", 1.0)
    else:
        epochs = eval_cfg["train"]["epochs"]
    return max(1, round(epochs * eval_cfg.get("model_epoch_scale", {}).get(model, 1.0)))


def evaluate(set_path, manifest_path, source_cfg: dict, model_name: str, eval_cfg: dict, ipc: int | None, out_path) -> None:
    """Train `model_name` from scratch on a set, once per seed; final-epoch accuracy on the real
    test split (and, with `evaluation.report_best_epoch`, the test-selected best epoch's). Images are loaded at `load_size`; training crops (RandomResizedCrop) and the test
    centre crop are `image_size` (Minimax: 256 -> 224)."""
    from torchvision.transforms.v2 import functional as TF

    from .models import build_model
    from .train import TrainConfig, accuracy, train_classifiers

    crop_size = eval_cfg["image_size"]
    load_size = eval_cfg.get("load_size") or crop_size
    manifest = pd.read_parquet(manifest_path)
    if ipc is None:  # the full-data upper bound
        set_frame = _train_split(manifest).assign(kind="real", method="full")
    else:
        set_frame = pd.read_parquet(set_path)
    method = set_frame.method.iloc[0]
    images = load_set_images(set_frame, source_cfg, load_size)
    labels = label_tensor(set_frame)
    test = manifest[manifest.split == "test"]
    test_images = TF.center_crop(data.load_images(test, source_cfg, load_size), [crop_size, crop_size])
    test_labels = label_tensor(test)
    num_classes = manifest.label.nunique()
    device = pick_device()
    epochs = epochs_for(eval_cfg, ipc, model_name)
    seeds = [int(s) for s in eval_cfg["seeds"]]
    # the seed field is per run: train_classifiers seeds each run's data order and augmentation
    cfg = TrainConfig.from_dict({**eval_cfg["train"], "epochs": epochs, "crop_size": crop_size})
    models = []
    for seed in seeds:
        seed_everything(seed)  # each model's initialisation
        models.append(build_model(model_name, num_classes, crop_size, eval_cfg.get("width", 64)))
    # evaluation.report_best_epoch: test accuracy every N epochs too (test-selected, reported apart)
    tracker = None
    if eval_cfg.get("report_best_epoch"):
        from .best_epoch import BestEpochTracker

        tracker = BestEpochTracker(len(models), lambda i: accuracy(models[i], test_images, test_labels, device))
    train_classifiers(models, seeds, images, labels, cfg, device, stack=eval_cfg.get("stack_seeds", "auto"),
                      desc=f"{method}/{model_name}", log=log.info, on_evaluate=tracker,
                      evaluate_every=eval_cfg.get("best_epoch_every", 1))
    rows = []
    for run, (seed, model) in enumerate(zip(seeds, models)):
        acc = accuracy(model, test_images, test_labels, device)
        log.info("%s %s seed %d: final-epoch test accuracy %.4f", method, model_name, seed, acc)
        rows.append({"method": method, "model": model_name, "seed": seed, "train_images": len(set_frame), "epochs": epochs, "test_accuracy": acc,
                     **(tracker.best(run) if tracker else {})})
    io.write_parquet(pd.DataFrame(rows), out_path)


# --------------------------------------------------------------------------- 11. label consistency
def label_consistency(judge_path, set_paths, out_csv, low_threshold: float = 0.7) -> None:
    """A judge (another architecture and seed than the detector) scores each synthetic set."""
    rows = []
    for path in sorted(map(str, set_paths)):
        frame = _score(judge_path, pd.read_parquet(path))
        rows.append(
            {
                "method": frame.method.iloc[0],
                "images": len(frame),
                "judge_wrong_label_pct": 100 * float((frame.predicted != frame.label).mean()),
                f"judge_target_softmax_below_{low_threshold}_pct": 100 * float((frame.p_target < low_threshold).mean()),
                "judge_mean_target_softmax": float(frame.p_target.mean()),
                "replaced_images": int((frame.origin == "candidate").sum()),
            }
        )
    io.write_csv(pd.DataFrame(rows), out_csv)


# --------------------------------------------------------------------------- 12. tables
def aggregate(eval_paths, out_csv, out_summary, out_paired, out_paired_md, title: str) -> None:
    """The per-run table, the per-(model, method) summary, and the paired per-seed differences
    (detdistill.stats) as CSV and markdown."""
    from . import best_epoch
    from .stats import paired_differences, paired_markdown

    table = pd.concat([pd.read_parquet(p) for p in sorted(map(str, eval_paths))], ignore_index=True)
    table["test_accuracy_pct"] = 100 * table.test_accuracy
    table = best_epoch.add_percent_column(table)
    table = table.sort_values(["model", "method", "seed"]).reset_index(drop=True)
    io.write_csv(table, out_csv)
    summary = (
        table.groupby(["model", "method"], sort=True)
        .test_accuracy_pct.agg(mean="mean", std="std", seeds="count")
        .reset_index()
        .round({"mean": 2, "std": 2})
    )
    test_selected = best_epoch.summary_columns(table, ["model", "method"])
    if test_selected is not None:  # beside the final-epoch columns, never instead of them
        summary = summary.merge(test_selected, on=["model", "method"], how="left", validate="one_to_one")
    io.write_csv(summary, out_summary)
    paired = paired_differences(table)
    io.write_csv(paired, out_paired)
    io.write_text(paired_markdown(paired, title), out_paired_md)
