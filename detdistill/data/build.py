"""The manifest a dataset's `source` settings make: its kind's images, checked, with the label
noise put on and the validation split carved; and the check that every image file decodes."""

from __future__ import annotations

import pandas as pd

from ..image_files import check_images_decode
from .classes import select_classes
from .label_noise import apply_label_noise
from .sources import source_kind
from .tables import check_manifest
from .validation import carve_validation


def build_manifest(source_cfg: dict, seed: int) -> pd.DataFrame:
    kind = source_kind(source_cfg)
    manifest = kind.manifest(source_cfg, seed)
    if source_cfg.get("classes") and not kind.reads_files(manifest, source_cfg):  # file layouts filter while listing
        manifest = select_classes(manifest, [str(c) for c in source_cfg["classes"]])
    check_manifest(manifest)
    if source_cfg.get("label_noise"):
        manifest = apply_label_noise(manifest, source_cfg["label_noise"], seed, source_cfg.get("root"))
    # carved after the label noise, so validation images carry the labels the train split has, but
    # drawn by true class (carve_validation): every arm of a noise experiment holds out the same images
    return carve_validation(manifest, source_cfg.get("validation_fraction", 0), seed)


def check_source_images(manifest: pd.DataFrame, source_cfg: dict, threads: int = 1, listing_path=None) -> dict[str, int]:
    """Every image file of the manifest decodes (DataError counting those that do not, each
    listed with its reason in `listing_path`): the count of each conversion decoding makes."""
    if not source_kind(source_cfg).reads_files(manifest, source_cfg):
        if listing_path is not None:
            check_images_decode([], threads, listing_path)
        return {}
    return dict(check_images_decode(manifest.source, threads, listing_path))
