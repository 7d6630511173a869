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


def train_classifier(*, manifest_path, source_cfg: dict, image_size: int, clf_cfg: dict, out_model, out_metrics, out_test_scores,
                     true_labels: bool = False) -> None:
    """Detector or judge: trained on the real train split only; test split only for its metrics.
    `true_labels` (the judge): where the manifest carries label noise (`clean_label`, detdistill.noise),
    train on the true labels, so the judge's label-consistency figures stay a measurement."""
    from ..models import build_model
    from ..train import TrainConfig, accuracy, predict, save_model
    from ..train import train_classifier as fit_classifier

    manifest = pd.read_parquet(manifest_path)
    train, test = data.train_split(manifest), manifest[manifest.split == "test"]
    num_classes = manifest.label.nunique()
    cfg = TrainConfig.from_dict(clf_cfg["train"])
    seed_everything(cfg.seed)
    model = build_model(clf_cfg["model"], num_classes, image_size, clf_cfg.get("width", 64))
    device = pick_device()
    on_true_labels = true_labels and "clean_label" in train.columns
    if on_true_labels:
        train = train.assign(label=train.clean_label)
    images, train_labels = data.load_images(train, source_cfg, image_size), data.label_tensor(train)
    history = fit_classifier(model, images, train_labels, cfg, device, desc=clf_cfg["model"], log=log.info)
    train_accuracy = accuracy(model, images, train_labels, device)
    del images  # the train images go before the test images come: the job holds one set at a time
    test_images = data.load_images(test, source_cfg, image_size)
    test_labels = data.label_tensor(test)
    probs = predict(model, test_images, device)["probs"]
    p_target = probs.gather(1, test_labels[:, None]).squeeze(1)
    save_model(model, out_model, {"name": clf_cfg["model"], "num_classes": num_classes, "image_size": image_size, "width": clf_cfg.get("width", 64)})
    metrics = {
        "model": clf_cfg["model"],
        "train_images": len(train),
        "test_images": len(test),
        "test_accuracy": float((probs.argmax(1) == test_labels).float().mean()),
        "train_accuracy": train_accuracy,
        "trained_on_true_labels": on_true_labels,
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


def score_images(model_path, frame: pd.DataFrame, *, load_images=None, batch_size: int = SCORE_CHUNK) -> pd.DataFrame:
    """Add predicted, p_target and feature columns (detector view) to an image table. Images are
    read `batch_size` rows at a time by `load_images(rows)` (default: the PNGs at `image_path`)."""
    from ..train import load_model, predict

    load_images = load_images or (lambda rows: data.load_png_images(rows.image_path))
    device = pick_device()
    model = load_model(model_path, device)
    outs = [predict(model, load_images(chunk), device) for chunk in data.row_chunks(frame, batch_size)]
    probs = torch.cat([out["probs"] for out in outs])
    labels = data.label_tensor(frame)
    frame = frame.copy()
    frame["predicted"] = probs.argmax(1).numpy()
    frame["p_target"] = probs.gather(1, labels[:, None]).squeeze(1).numpy()
    frame["feature"] = list(torch.cat([out["features"] for out in outs]).numpy())
    return frame


def score_initial(*, initial_dirs, detector_path, out_path) -> None:
    io.write_parquet(score_images(detector_path, data.read_image_dirs(initial_dirs)), out_path)


def score_train_features(*, manifest_path, source_cfg: dict, image_size: int, detector_path, out_path) -> None:
    """The detector's view (prediction, target softmax, penultimate feature) of every *train* image,
    streamed in chunks: the space the herding and k-center baselines select in."""
    train = data.train_split(pd.read_parquet(manifest_path))
    scored = score_images(detector_path, train, load_images=lambda rows: data.load_images(rows, source_cfg, image_size))
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
    scored = score_images(detector_path, validation, load_images=lambda rows: data.load_images(rows, source_cfg, image_size))
    io.write_parquet(scored[["image_id", "label", "predicted", "p_target"]], out_path)
    log.info("detector on %d validation images: median target softmax %.3f", len(scored), scored.p_target.median())
