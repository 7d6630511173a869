"""The dataset's manifest: every image, decoded once before any other stage reads it."""

from __future__ import annotations

import logging

from .. import data, io

log = logging.getLogger("detdistill")


def prepare_data(*, source_cfg: dict, seed: int, out_manifest, out_unreadable, threads: int = 1) -> None:
    """The manifest of every image, written only once each image file has been decoded; every
    file that cannot be is listed with its reason in `out_unreadable` (a log: kept when the job fails)."""
    manifest = data.build_manifest(source_cfg, seed)
    conversions = data.check_source_images(manifest, source_cfg, threads, out_unreadable)
    if conversions:  # what decoding does beyond a plain 8-bit RGB read (detdistill.image_files)
        log.info("decoded as a viewer shows them: %s", "; ".join(f"{n} {what}" for what, n in sorted(conversions.items())))
    io.write_parquet(manifest, out_manifest)
    counts = manifest.groupby(["split"]).size().to_dict()
    log.info("manifest: %d images, %s, %d classes", len(manifest), counts, manifest.label.nunique())
    if "clean_label" in manifest.columns:  # source.label_noise: what was put on, per class
        log.info("label noise on the train split:\n%s", data.noise_summary(manifest).to_string(index=False))
