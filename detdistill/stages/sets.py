"""The distilled sets: the refined synthetic set, and the real-image baselines (random, herding,
k-center) at the same IPC."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import data, io

log = logging.getLogger("detdistill")


def build_refined_set(*, anomalies_path, candidate_dirs, method: str, top_k: int, out_path, out_png, normal_set: str = "all") -> None:
    """One set; conf_sim accepts candidates above the beta that flagged their class's images (the
    anomaly table's `beta` column: fixed or calibrated, never re-derived here)."""
    from ..refine import refine_set
    from ..report import contact_sheet

    anomalies = pd.read_parquet(anomalies_path)
    if "beta" not in anomalies.columns:
        raise data.DataError(f"{anomalies_path} has no `beta` column (written by an older version): delete it so the workflow re-runs detect_anomalies")
    betas = anomalies.groupby("label").beta.first().to_dict()
    candidates = data.read_image_dirs(candidate_dirs)
    result = refine_set(anomalies, candidates, method=method, beta=betas, top_k=top_k, normal_set=normal_set or "all")
    result["kind"] = "synthetic"
    io.write_parquet(result, out_path)
    contact_sheet(result, out_png)
    log.info("%s: replaced %d of %d images", method, int((result.origin == "candidate").sum()), len(result))


def _real_subset(train: pd.DataFrame, ipc: int, method: str, pick) -> pd.DataFrame:
    """`ipc` train rows per class, `pick(label, group)` giving their positions in the group."""
    data.check_class_sizes(train, ipc)
    parts = []
    for label, group in train.groupby("label", sort=True):
        parts.append(group.iloc[pick(int(label), group)])
    subset = pd.concat(parts, ignore_index=True)
    subset.insert(0, "method", method)
    subset["kind"] = "real"
    return subset


def select_random_subset(*, manifest_path, ipc: int, seed: int, out_path) -> None:
    """A seeded random subset of `ipc` real train images per class (not the first files on disk)."""
    rng = np.random.default_rng(seed)
    train = data.train_split(pd.read_parquet(manifest_path))
    subset = _real_subset(train, ipc, "random", lambda label, group: np.sort(rng.choice(len(group), ipc, replace=False)))
    io.write_parquet(subset, out_path)


def select_feature_subset(*, manifest_path, features_path, method: str, ipc: int, seed: int, out_path) -> None:
    """`ipc` real train images per class chosen by herding or k-center in the detector's feature
    space (detdistill.baselines), in pick order (`selection_rank`)."""
    from ..baselines import select

    train = data.train_split(pd.read_parquet(manifest_path))
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


def refinement_figures(*, anomalies_path, candidate_dirs, set_paths: dict, top_k: int, out_flagged, out_candidates) -> None:
    """The report's pictures of the refinement (detdistill.figures): the initial set with its
    flagged images beside the refined set, and the candidate panel of the flagged images."""
    from .. import figures

    anomalies = pd.read_parquet(anomalies_path)
    sets = {method: pd.read_parquet(path) for method, path in set_paths.items()}
    io.write_png(figures.flagged_figure(anomalies, sets["conf_sim"]), out_flagged)
    class_names = dict(zip(anomalies.label, anomalies.class_name, strict=True))
    panel = figures.candidates_figure(anomalies, data.read_image_dirs(candidate_dirs), sets, top_k, class_names)
    io.write_png(panel if panel is not None else figures.placeholder("no image was flagged: no candidates"), out_candidates)
