"""Calibrated beta: the detector's confidence threshold read off real images it did not train on.

The paper flags an initial image as defective when the detector's target softmax is below a fixed
beta (0.9). How confident a detector is on *real* images depends on its training (CutMix and a
short schedule make it under-confident: beta 0.9 flags 23% of real digits, beta 0.7 61% of real
CIFAR-10 test images), so a fixed beta means different things for different detectors. The
calibrated modes set beta to the q-quantile of the target softmax on the validation split (real
train-split images held out of every training, `source.validation_fraction`): about a share q of
real images of the class (or of all classes) falls below it. The test split is never read here.

Modes (`refinement.beta_mode`)
- ``fixed``: `refinement.beta` for every class (the paper).
- ``quantile_global``: one beta, the q-quantile over all validation images.
- ``quantile_per_class``: per class, the q-quantile over that class's validation images.
- ``temperature``: the fixed `refinement.beta`, applied to the detector's *temperature-scaled*
  softmax (Guo et al. 2017): one temperature T fitted by NLL on the validation images when the
  detector is trained, stored in its safetensors metadata and applied wherever the detector
  scores images (initial images, candidates, validation and test images). Predictions never
  change; only how confident they read. Scores then keep the uncalibrated `p_target_raw` beside.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .data import DataError

BETA_MODES = ("fixed", "quantile_global", "quantile_per_class", "temperature")
#: modes with a fixed beta per class; `temperature` calibrates the softmax instead
QUANTILE_MODES = ("quantile_global", "quantile_per_class")
VALIDATION_SPLIT = "val"

log = logging.getLogger("detdistill")


def calibrated_betas(validation_scores: pd.DataFrame, mode: str, quantile: float, labels, where: str = "validation scores") -> dict[int, float]:
    """{label: beta} from the validation images' `p_target` (numpy's linear-interpolation quantile).
    `where` names the table in errors."""
    if mode not in QUANTILE_MODES:
        raise ValueError(f"calibrated_betas: mode {mode!r} is not one of {QUANTILE_MODES}")
    if not 0 < quantile < 1:
        raise DataError(f"`refinement.beta_quantile` {quantile} must be between 0 and 1 (exclusive)")
    labels = [int(y) for y in labels]
    if validation_scores.empty:
        raise DataError(f"{where} holds no images: set `source.validation_fraction` above 0")
    if mode == "quantile_global":
        beta = float(np.quantile(validation_scores.p_target.to_numpy(np.float64), quantile))
        return dict.fromkeys(labels, beta)
    by_class = validation_scores.groupby("label").p_target
    missing = sorted(set(labels) - set(by_class.groups))
    if missing:
        raise DataError(
            f"{where} has no images of classes {missing}: raise `source.validation_fraction`, "
            "or use `refinement.beta_mode: quantile_global`"
        )
    return {y: float(np.quantile(by_class.get_group(y).to_numpy(np.float64), quantile)) for y in labels}


def anomaly_betas(beta: float, mode: str, quantile: float | None, labels, validation_scores: pd.DataFrame | None = None,
                  where: str = "validation scores") -> dict[int, float]:
    """{label: beta} the anomaly rule applies: the fixed `beta` for every class in `fixed` and
    `temperature` mode (there the softmax is calibrated, not beta), else calibrated on the
    detector's validation scores (which must then be given)."""
    if mode not in QUANTILE_MODES:
        return {int(y): float(beta) for y in labels}
    if validation_scores is None:
        raise ValueError(f"refinement.beta_mode {mode!r} needs the detector's validation scores")
    return calibrated_betas(validation_scores, mode, quantile, labels, where)


#: the range a fitted temperature is searched in: a detector right on every validation image has
#: no finite NLL optimum (T -> 0); a fit at an end is reported as such (`at_bound`)
TEMPERATURE_BOUNDS = (0.05, 20.0)


def fit_temperature(logits, labels, tolerance: float = 1e-6) -> float:
    """Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the
    T in TEMPERATURE_BOUNDS minimising the NLL of softmax(logits / T) on held-out images. The NLL
    is convex in 1/T, so unimodal in log T: a golden-section search on log T in float64 finds it
    deterministically, bounded, and with no step size to tune. The argmax, so every predicted
    class, is unchanged by T."""
    import math

    import torch
    import torch.nn.functional as F

    logits = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(logits) == 0:
        raise DataError("temperature scaling needs validation images: set `source.validation_fraction` above 0")

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / math.exp(log_t), labels))

    low, high = (math.log(t) for t in TEMPERATURE_BOUNDS)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = high - ratio * (high - low), low + ratio * (high - low)
    f_c, f_d = nll(c), nll(d)
    while high - low > tolerance:
        # ties (an NLL flat at float64's resolution) move towards the larger, less extreme T
        if f_c < f_d:
            high, d, f_d = d, c, f_c
            c = high - ratio * (high - low)
            f_c = nll(c)
        else:
            low, c, f_c = c, d, f_d
            d = low + ratio * (high - low)
            f_d = nll(d)
    return math.exp((low + high) / 2)


def at_temperature_bound(temperature: float) -> bool:
    """A fit at an end of TEMPERATURE_BOUNDS: no interior NLL minimum was found. At the lower end
    the detector was right on (nearly) every validation image and the scaled softmax is ~0 or 1."""
    return any(abs(temperature / bound - 1) < 1e-4 for bound in TEMPERATURE_BOUNDS)


def calibration_metrics(logits, labels, temperature: float, n_bins: int = 15) -> dict:
    """NLL and expected calibration error (torchmetrics, `n_bins` equal-width bins, L1) of the
    softmax before (T = 1) and after temperature scaling, on the images T was fitted on."""
    import torch
    import torch.nn.functional as F
    from torchmetrics.functional.classification import multiclass_calibration_error

    logits = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    out = {"temperature": temperature, "images": len(labels),
           "at_bound": at_temperature_bound(temperature)}
    for name, t in (("before", 1.0), ("after", temperature)):
        scaled = logits / t
        out[f"nll_{name}"] = float(F.cross_entropy(scaled, labels))
        out[f"ece_{name}"] = float(multiclass_calibration_error(scaled.softmax(1).float(), labels, num_classes=logits.shape[1],
                                                                n_bins=n_bins, norm="l1"))
    return out
