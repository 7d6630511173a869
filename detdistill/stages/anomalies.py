"""The detector's verdict on the initial synthetic images: the flagging rule and its report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import data, io

log = logging.getLogger("detdistill")


def flag_anomalies(scores: pd.DataFrame, beta: float) -> pd.DataFrame:
    frame = scores.copy()
    mismatch = frame.predicted != frame.label
    low = frame.p_target < beta
    frame["reason"] = np.where(mismatch, "label_mismatch", np.where(low, "low_confidence", "normal"))
    frame["defective"] = mismatch | low
    return frame


def detect_anomalies(*, scores_path, detector_test_scores_path, manifest_path, beta: float, out_parquet, out_report) -> None:
    from ..report import anomaly_markdown

    class_names = data.class_names(pd.read_parquet(manifest_path))
    frame = flag_anomalies(pd.read_parquet(scores_path), beta)
    # the same rule applied to real held-out images: what beta means for this detector
    real = flag_anomalies(pd.read_parquet(detector_test_scores_path), beta)
    io.write_parquet(frame, out_parquet)
    io.write_text(anomaly_markdown(frame, real, beta, class_names, Path(out_report).parent), out_report)
    log.info("anomalies: %d of %d flagged (beta %.2f)", int(frame.defective.sum()), len(frame), beta)
