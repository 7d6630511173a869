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
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .data import DataError

BETA_MODES = ("fixed", "quantile_global", "quantile_per_class")
VALIDATION_SPLIT = "val"

log = logging.getLogger("detdistill")


def calibrated_betas(validation_scores: pd.DataFrame, mode: str, quantile: float, labels, where: str = "validation scores") -> dict[int, float]:
    """{label: beta} from the validation images' `p_target` (numpy's linear-interpolation quantile).
    `where` names the table in errors."""
    if mode not in BETA_MODES or mode == "fixed":
        raise ValueError(f"calibrated_betas: mode {mode!r} is not one of {BETA_MODES[1:]}")
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
    """{label: beta} the anomaly rule applies: the fixed `beta` for every class in `fixed` mode,
    else calibrated on the detector's validation scores (which must then be given)."""
    if mode == "fixed":
        return {int(y): float(beta) for y in labels}
    if validation_scores is None:
        raise ValueError(f"refinement.beta_mode {mode!r} needs the detector's validation scores")
    return calibrated_betas(validation_scores, mode, quantile, labels, where)
