"""Image quality of each distilled set against the real *training* split (the paper's Table IV).

Two feature spaces:

- ``judge_*``: the penultimate features of the judge classifier (``Classifier.features``, the
  ones `train.predict` returns), trained on this dataset's real train split. Always computed.
  These are *not* Inception scores: the judge is a small network trained on the dataset, so the
  values are comparable between the rows of one table only, never with published FIDs.
- ``inception_fid``: FID in the standard InceptionV3 pool features (torchmetrics on
  torch-fidelity's weights), only when the weights are on disk (nothing is downloaded):
  `quality.inception_weights`, else torch-fidelity's file in the torch hub cache. Otherwise the
  column is NaN and ``inception_note`` says why.

FID is torchmetrics' `FrechetInceptionDistance` (float64 running sums, its Fréchet distance): the
judge's features, computed once per image, reach it through a pass-through `feature` module.
Precision, recall, density and coverage are prdc's `compute_prdc` (Naeem et al. 2020) with
`nearest_k` neighbours (prdc's own examples use 5).

The reference is a seeded subsample of the real train split (never the test split) of at most
`reference_images` images: prdc holds reference x reference distance matrices (5,000 images:
100 MB in float32). All sets are compared with the same reference. The random-subset row is
real train data: its images are in the reference whenever the reference holds the whole train
split, which makes its precision exactly 1 by construction; it is the real-data yardstick.
"""

from __future__ import annotations

import logging
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import data, io
from .device import pick_device

log = logging.getLogger("detdistill")

BATCH_SIZE = 256  # images loaded, and passed through the networks, at a time
INCEPTION_FEATURES = 2048  # the standard FID layer (pool3); its 2048x2048 eigen-solve is ~30 CPU-s per set


def reference_subsample(manifest: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """At most `size` train-split rows, drawn uniformly without replacement (seeded), in manifest order."""
    train = data.train_split(manifest)
    if len(train) <= size:
        return train
    keep = np.sort(np.random.default_rng(seed).choice(len(train), size, replace=False))
    return train.iloc[keep].reset_index(drop=True)


class PassThroughFeatures(nn.Module):
    """A torchmetrics `feature` module for features already extracted: FID's running sums see
    them unchanged, and `num_features` spares torchmetrics its dummy forward pass."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _fid_metric(feature, **kwargs):
    from torchmetrics.image.fid import FrechetInceptionDistance

    # reset_real_features=False: reset() drops only the previous set's statistics, so the
    # reference is passed through the network once for all sets
    return FrechetInceptionDistance(feature=feature, reset_real_features=False, **kwargs)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature matrices (rows are samples), by torchmetrics in float64."""
    metric = _fid_metric(PassThroughFeatures(real.shape[1]))
    metric.update(torch.from_numpy(np.asarray(real, dtype=np.float64)), real=True)
    metric.update(torch.from_numpy(np.asarray(fake, dtype=np.float64)), real=False)
    return float(metric.compute())


def check_nearest_k(n_real: int, n_fake: int, nearest_k: int, what: str = "the set") -> None:
    """prdc takes each sample's k-th neighbour among the others: both sides need k + 2 samples."""
    smallest = min(n_real, n_fake)
    if smallest < nearest_k + 2:
        raise ValueError(
            f"{what} has {n_fake} images against {n_real} reference images; quality.nearest_k = {nearest_k} "
            f"needs at least {nearest_k + 2} on each side: lower quality.nearest_k"
        )


def prdc_metrics(real: np.ndarray, fake: np.ndarray, nearest_k: int, what: str = "the set") -> dict[str, float]:
    """prdc's precision, recall, density and coverage of `fake` against `real`."""
    from prdc import compute_prdc

    check_nearest_k(len(real), len(fake), nearest_k, what)
    with redirect_stdout(sys.stderr):  # prdc prints the sample counts; keep stdout clean
        values = compute_prdc(np.asarray(real, np.float32), np.asarray(fake, np.float32), nearest_k)
    return {name: float(value) for name, value in values.items()}


def feature_metrics(real: np.ndarray, fake: np.ndarray, nearest_k: int, what: str = "the set") -> dict[str, float]:
    """FID, precision, recall, density and coverage of `fake` against `real` in one feature space."""
    return {"fid": frechet_distance(real, fake), **prdc_metrics(real, fake, nearest_k, what)}


# --------------------------------------------------------------------------- Inception (optional)
def inception_weights(configured: str | None) -> tuple[Path | None, str]:
    """(weights file, '') when torch-fidelity's InceptionV3 weights are on disk, else (None, why).
    A configured path must exist; without one, the file torch-fidelity would download is looked
    for in the torch hub cache (`$TORCH_HOME/hub/checkpoints`)."""
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FileNotFoundError(
                f"quality.inception_weights: {path} is not a file; point it at torch-fidelity's "
                "weights-inception-2015-12-05-6726825d.pth, or set it to null"
            )
        return path, ""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    except ImportError:
        return None, "torch-fidelity is not installed"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(URL_INCEPTION_V3).name
    if cached.is_file():
        return cached, ""
    return None, f"no Inception weights offline ({cached.name} not in the torch hub cache; see quality.inception_weights)"


class InceptionFID:
    """FID in InceptionV3 pool features (`INCEPTION_FEATURES`): the reference once, then one set at a time."""

    def __init__(self, weights: Path, device):
        # uint8 in (normalize=False): a float round trip x / 255 * 255 truncated to bytes could shift pixels
        self.metric = _fid_metric(INCEPTION_FEATURES, feature_extractor_weights_path=str(weights)).to(device)
        self.device = device

    def update(self, images: torch.Tensor, real: bool) -> None:
        """uint8 (N,3,H,W) images; torch-fidelity resizes them to 299 px."""
        self.metric.update(images.to(self.device), real=real)

    def compute(self) -> float:
        value = float(self.metric.compute())
        self.metric.reset()  # keeps the reference's sums, drops this set's
        return value


# --------------------------------------------------------------------------- the stage
def _features(chunks, judge_features, inception: InceptionFID | None, real: bool) -> np.ndarray:
    """The judge's features of a frame's images, from `chunks` (uint8 tensors of `BATCH_SIZE` rows:
    never all at once); Inception's running statistics take the same batches on the way."""
    features = []
    for images in chunks:
        features.append(judge_features(images))
        if inception:
            inception.update(images, real=real)
    return np.concatenate(features)


def set_quality(*, judge_path, manifest_path, set_paths, source_cfg: dict, image_size: int, reference_images: int,
                nearest_k: int, seed: int, inception_weights_path: str | None, out_csv) -> None:
    """One row per set: judge-space FID/precision/recall/density/coverage, and Inception FID
    when its weights are on disk, against a seeded subsample of the real train split."""
    from .train import load_model, predict

    device = pick_device()
    judge = load_model(judge_path, device)

    def judge_features(images: torch.Tensor) -> np.ndarray:
        return predict(judge, images, device, batch_size=BATCH_SIZE)["features"].numpy()

    weights, inception_note = inception_weights(inception_weights_path)
    inception = InceptionFID(weights, device) if weights else None
    if inception is None:
        log.info("inception_fid left NaN: %s", inception_note)

    reference = reference_subsample(pd.read_parquet(manifest_path), reference_images, seed)
    real_features = _features(data.image_chunks(reference, source_cfg, image_size, BATCH_SIZE),
                              judge_features, inception, real=True)
    # names the feature space in the table, so judge_fid is never read as an Inception FID
    judge_space = f"{judge.build_args['name']} width {judge.build_args['width']}, {real_features.shape[1]}-d penultimate"
    log.info("reference: %d real train images; judge features: %s", len(real_features), judge_space)

    rows = []
    for path in map(str, set_paths):
        set_frame = pd.read_parquet(path)
        fake_features = _features((data.load_set_images(chunk, source_cfg, image_size)
                                   for chunk in data.row_chunks(set_frame, BATCH_SIZE)),
                                  judge_features, inception, real=False)
        judge_values = feature_metrics(real_features, fake_features, nearest_k, what=f"set {path}")
        row = {"method": set_frame.method.iloc[0], "images": len(set_frame), "reference_images": len(reference),
               "nearest_k": nearest_k, "judge_space": judge_space, **{f"judge_{name}": value for name, value in judge_values.items()},
               "inception_fid": inception.compute() if inception else float("nan"), "inception_note": inception_note}
        log.info("%s: %s", row["method"], {k: round(v, 4) for k, v in judge_values.items()})
        rows.append(row)
    io.write_csv(pd.DataFrame(rows), out_csv)
