"""The dataset's manifest: every image, decoded once before any other stage reads it."""

from __future__ import annotations

import logging

from .. import data, io
from ..noise import noise_summary

log = logging.getLogger("detdistill")


def prepare_data(*, source_cfg: dict, seed: int, out_manifest, threads: int = 1) -> None:
    """The manifest of every image, written only once each image file has been decoded."""
    manifest = data.build_manifest(source_cfg, seed)
    data.check_source_images(manifest, source_cfg, threads)
    io.write_parquet(manifest, out_manifest)
    counts = manifest.groupby(["split"]).size().to_dict()
    log.info("manifest: %d images, %s, %d classes", len(manifest), counts, manifest.label.nunique())
    if "clean_label" in manifest.columns:  # source.label_noise: what was put on, per class
        log.info("label noise on the train split:\n%s", noise_summary(manifest).to_string(index=False))
