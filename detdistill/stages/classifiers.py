"""Classifiers trained on the real train split, and what they say about images: the detector
(which flags defective synthetic images and scores candidates) and the judge (another
architecture and seed, which scores the finished sets)."""

from __future__ import annotations

import logging

import pandas as pd
import torch

from .. import data, io
from ..device import pick_device, seed_everything

log = logging.getLogger("detdistill")

REPORTED_BETAS = (0.5, 0.7, 0.9)
#: a loaded classifier at most this many times chance accuracy on the test split is warned about:
#: a file trained with another class order scores near chance, which no key or shape check can see
CHANCE_WARNING = 1.5


def classifier_build(clf_cfg: dict, num_classes: int, image_size: int) -> dict:
    """build_model's arguments for a `detector`/`judge`/teacher section (its defaults record nothing
    in the saved file, so classifiers trained before the keys existed keep their bytes)."""
    return {"name": clf_cfg["model"], "num_classes": int(num_classes), "image_size": int(image_size),
            "width": clf_cfg.get("width", 64), "architecture": clf_cfg.get("architecture", "detdistill"),
            "normalization": clf_cfg.get("normalization", "half")}


def train_classifier(*, manifest_path, source_cfg: dict, image_size: int, clf_cfg: dict, out_model, out_metrics, out_test_scores,
                     true_labels: bool = False) -> None:
    """Detector or judge: trained on the real train split only; test split only for its metrics.
    `true_labels` (the judge): where the manifest carries label noise (`clean_label`, detdistill.data.label_noise),
    train on the true labels, so the judge's label-consistency figures stay a measurement.
    `clf_cfg["weights"]` (a file, detdistill.checkpoints): load it instead of training; the same
    test-split figures are measured, and the file's sha256 is kept with the model and its metrics.
    `clf_cfg["temperature_scaling"]` (set by the workflow for the detector of a run with
    `refinement.beta_mode: temperature`): fit a softmax temperature on the validation split (never
    the test split) and store it with the model."""
    from ..calibration import VALIDATION_SPLIT, calibration_metrics, fit_temperature
    from ..checkpoints import file_sha256, load_classifier
    from ..models import build_model
    from ..train import TrainConfig, accuracy, fit_classifier, predict, save_model

    manifest = pd.read_parquet(manifest_path)
    train, test = data.train_split(manifest), manifest[manifest.split == "test"]
    num_classes = manifest.label.nunique()
    build = classifier_build(clf_cfg, num_classes, image_size)
    device = pick_device()
    weights = clf_cfg.get("weights")
    on_true_labels = true_labels and "clean_label" in train.columns and not weights
    meta = {"name": clf_cfg["model"], "num_classes": num_classes, "image_size": image_size, "width": clf_cfg.get("width", 64)}
    if weights:
        weights_sha256 = file_sha256(weights)
        if clf_cfg.get("weights_sha256", weights_sha256) != weights_sha256:
            raise data.DataError(f"{weights} changed after the workflow checked it (sha256 {clf_cfg['weights_sha256']}, "
                                 f"now {weights_sha256}): start the run again")
        model = load_classifier(weights, build).to(device)
        meta["weights_sha256"] = weights_sha256
        # a file's own training is unknown here; its test-split figures below are what the run measures
        history, train_accuracy = None, None
        log.info("classifier %s: weights loaded from %s (sha256 %s), not trained", clf_cfg["model"], weights, weights_sha256)
    else:
        cfg = TrainConfig.from_dict(clf_cfg["train"])
        seed_everything(cfg.seed)
        model = build_model(**build)
        if on_true_labels:
            train = train.assign(label=train.clean_label)
        images, train_labels = data.load_images(train, source_cfg, image_size), data.label_tensor(train)
        history = fit_classifier(model, images, train_labels, cfg, device, desc=clf_cfg["model"], log=log.info)
        train_accuracy = accuracy(model, images, train_labels, device)
        del images  # the train images go before the test images come: the job holds one set at a time
    calibration = None
    if clf_cfg.get("temperature_scaling"):
        validation = manifest[manifest.split == VALIDATION_SPLIT]
        if validation.empty:
            raise data.DataError(f"{manifest_path} has no validation images to fit the detector's temperature on: "
                                 "set `source.validation_fraction` above 0")
        # the validation images' labels as observed (noisy where the train split is), like the train split's
        logits = predict(model, data.load_images(validation, source_cfg, image_size), device)["logits"]
        validation_labels = data.label_tensor(validation)
        temperature = fit_temperature(logits, validation_labels)
        calibration = calibration_metrics(logits, validation_labels, temperature)
        meta["temperature"] = temperature
        log.info("temperature scaling: T = %.3f on %d validation images (NLL %.3f -> %.3f, ECE %.3f -> %.3f)", temperature,
                 len(validation), calibration["nll_before"], calibration["nll_after"], calibration["ece_before"],
                 calibration["ece_after"])
        if calibration["at_bound"]:
            log.warning("temperature scaling: T = %.3f is at the end of its search range (no NLL minimum inside it): "
                        "see the anomaly report", temperature)
    test_images = data.load_images(test, source_cfg, image_size)
    test_labels = data.label_tensor(test)
    test_logits = predict(model, test_images, device)["logits"]
    probs = _softmax(test_logits, meta.get("temperature", 1.0))
    p_target = _of_target(probs, test_labels)
    save_model(model, out_model, meta)
    metrics = {
        "model": clf_cfg["model"],
        "train_images": None if weights else len(train),
        "test_images": len(test),
        "test_accuracy": float((probs.argmax(1) == test_labels).float().mean()),
        "train_accuracy": train_accuracy,
        "trained_on_true_labels": on_true_labels,
        # what a confidence threshold means for this model: the share of *real* test images it would flag
        "test_target_softmax_median": float(p_target.median()),
        "test_share_below_beta": {str(b): float((p_target < b).float().mean()) for b in REPORTED_BETAS},
        "final_loss": history[-1]["loss"] if history else None,
        "trained_in_run": not weights,
        **({"weights": str(weights), "weights_sha256": weights_sha256} if weights else {}),
        "train_config": clf_cfg,
        **({"temperature_scaling": calibration} if calibration else {}),
    }
    io.write_json(metrics, out_metrics)
    test_scores = test[["image_id", "label"]].assign(predicted=probs.argmax(1).numpy(), p_target=p_target.numpy())
    if calibration:
        test_scores["p_target_raw"] = _of_target(_softmax(test_logits, 1.0), test_labels).numpy()
    io.write_parquet(test_scores, out_test_scores)
    log.info("classifier %s: test accuracy %.4f", clf_cfg["model"], metrics["test_accuracy"])
    if weights and metrics["test_accuracy"] <= CHANCE_WARNING / num_classes:
        log.warning("classifier %s from %s: test accuracy %.4f is near chance (%d classes): does the file's class "
                    "order match the dataset's?", clf_cfg["model"], weights, metrics["test_accuracy"], num_classes)


#: images decoded at a time when scoring: bounds memory (10,000 candidates at 256 px would be 2 GB
#: at once); a multiple of `predict`'s batch of 256, so the model sees the batches one call would
SCORE_CHUNK = 1024


def _softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax at `temperature`; at 1 exactly the plain softmax (runs without scaling keep their bytes)."""
    return logits.softmax(1) if temperature == 1.0 else (logits / temperature).softmax(1)


def _of_target(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's probability of its own label."""
    return probs.gather(1, labels[:, None]).squeeze(1)


def _png_chunks(frame: pd.DataFrame, batch_size: int):
    for chunk in data.row_chunks(frame, batch_size):
        yield data.load_png_images(chunk.image_path)


def score_images(model_path, frame: pd.DataFrame, *, image_chunks=None, batch_size: int = SCORE_CHUNK) -> pd.DataFrame:
    """Add predicted, p_target and feature columns (detector view) to an image table. Images are
    read `batch_size` rows at a time by `image_chunks(frame, batch_size)`, an iterator of uint8
    tensors (default: the PNGs at `image_path`).
    A model saved with a temperature (detdistill.calibration) gives its temperature-scaled
    softmax as p_target, plus `p_target_raw` (T = 1) and the `temperature` it used."""
    from ..train import load_model, model_temperature, predict

    image_chunks = image_chunks or _png_chunks
    device = pick_device()
    model = load_model(model_path, device)
    temperature = model_temperature(model_path)
    outs = [predict(model, images, device) for images in image_chunks(frame, batch_size)]
    logits = torch.cat([out["logits"] for out in outs])
    probs = _softmax(logits, temperature or 1.0)
    labels = data.label_tensor(frame)
    frame = frame.copy()
    frame["predicted"] = probs.argmax(1).numpy()
    frame["p_target"] = _of_target(probs, labels).numpy()
    if temperature is not None:
        frame["p_target_raw"] = _of_target(_softmax(logits, 1.0), labels).numpy()
        frame["temperature"] = temperature
    frame["feature"] = list(torch.cat([out["features"] for out in outs]).numpy())
    return frame


def score_initial(*, initial_dirs, detector_path, out_path) -> None:
    io.write_parquet(score_images(detector_path, data.read_image_dirs(initial_dirs)), out_path)


def score_train_features(*, manifest_path, source_cfg: dict, image_size: int, detector_path, out_path) -> None:
    """The detector's view (prediction, target softmax, penultimate feature) of every *train* image,
    streamed in chunks: the space the herding and k-center baselines select in."""
    train = data.train_split(pd.read_parquet(manifest_path))
    scored = score_images(detector_path, train, image_chunks=lambda rows, size: data.image_chunks(rows, source_cfg, image_size, size))
    io.write_parquet(scored[["image_id", "label", "predicted", "p_target", "feature"]], out_path)
    log.info("detector features of %d train images", len(scored))


def label_consistency(*, judge_path, set_paths, out_csv, low_threshold: float = 0.7) -> None:
    """A judge (another architecture and seed than the detector) scores each synthetic set."""
    rows = []
    for path in sorted(map(str, set_paths)):
        frame = score_images(judge_path, pd.read_parquet(path))
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


def score_validation(*, manifest_path, source_cfg: dict, image_size: int, detector_path, out_path) -> None:
    """The detector's prediction and target softmax on every validation image (split 'val' of the
    manifest: never the test split), the data the calibrated beta is read from."""
    from ..calibration import VALIDATION_SPLIT

    manifest = pd.read_parquet(manifest_path)
    validation = manifest[manifest.split == VALIDATION_SPLIT].reset_index(drop=True)
    if validation.empty:
        raise data.DataError(f"{manifest_path} has no validation images: set `source.validation_fraction` above 0")
    scored = score_images(detector_path, validation, image_chunks=lambda rows, size: data.image_chunks(rows, source_cfg, image_size, size))
    kept = ["image_id", "label", "predicted", "p_target", *(c for c in ("p_target_raw", "temperature") if c in scored)]
    io.write_parquet(scored[kept], out_path)
    log.info("detector on %d validation images: median target softmax %.3f", len(scored), scored.p_target.median())
