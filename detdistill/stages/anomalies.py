"""The detector's verdict on the initial synthetic images: the flagging rule and its report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import data, io

log = logging.getLogger("detdistill")


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


def _plain_softmax(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores as the detector's plain softmax (T = 1) gives them: `p_target_raw` where a
    temperature-scaled detector wrote one (detdistill.calibration), else `p_target` as it is."""
    return scores.assign(p_target=scores.p_target_raw) if "p_target_raw" in scores else scores


def _detector_temperature(scores: pd.DataFrame, scores_path) -> float:
    """The temperature the initial images were scored at (a detector saved without one leaves no
    column): a run set to `beta_mode: temperature` must have a scaled detector."""
    if "temperature" not in scores:
        raise data.DataError(f"{scores_path} was scored by a detector without a fitted temperature, but "
                             "`refinement.beta_mode` is temperature: delete the detector's model.safetensors and re-run")
    return float(scores.temperature.iloc[0])


def detect_anomalies(*, scores_path, detector_test_scores_path, manifest_path, beta: float, out_parquet, out_report,
                     beta_mode: str = "fixed", beta_quantile: float | None = None, validation_scores_path=None) -> None:
    """Flag the initial images with the fixed `beta` or, for a calibrated `beta_mode`, with betas
    read off the detector's validation scores (detdistill.calibration); the report then sets the
    fixed beta's verdicts beside them."""
    from ..calibration import anomaly_betas
    from ..report import FixedBetaComparison, anomaly_markdown

    class_names = data.class_names(pd.read_parquet(manifest_path))
    scores, test_scores = pd.read_parquet(scores_path), pd.read_parquet(detector_test_scores_path)
    validation = pd.read_parquet(validation_scores_path) if validation_scores_path else None
    betas = anomaly_betas(beta, beta_mode, beta_quantile, range(len(class_names)), validation, str(validation_scores_path))
    frame = flag_anomalies(scores, betas)
    # the same rule applied to real held-out images: what beta means for this detector (reported only)
    real = flag_anomalies(test_scores, betas)
    fixed = None
    if beta_mode != "fixed":
        temperature = _detector_temperature(scores, scores_path) if beta_mode == "temperature" else None
        fixed = FixedBetaComparison(beta, beta_mode, None if temperature else beta_quantile,
                                    flag_anomalies(_plain_softmax(scores), beta), flag_anomalies(_plain_softmax(test_scores), beta),
                                    len(validation), temperature)
    io.write_parquet(frame, out_parquet)
    io.write_text(anomaly_markdown(frame, real, beta, class_names, Path(out_report).parent, fixed=fixed), out_report)
    log.info("anomalies: %d of %d flagged (beta mode %s, betas %s)", int(frame.defective.sum()), len(frame), beta_mode,
             sorted(set(betas.values())))
