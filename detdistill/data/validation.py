"""The validation split: real images carved from the train split that nothing trains on
(`source.validation_fraction`)."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from ..errors import DataError


def validation_count(train_images: int, fraction: float) -> int:
    """Validation images carved from a class with `train_images` train images: floor(fraction x n),
    at least 1 when fraction > 0 (so per-class calibration has an image of every class). A
    function of the count alone, so the workflow can check the IPC before the manifest exists."""
    return 0 if fraction <= 0 else max(1, math.floor(fraction * train_images))


def carve_validation(manifest: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Move `validation_count` train images of every class to split 'val', drawn by a generator
    seeded with `seed` and the class name (not the label, which `source.classes` renumbers), so a
    class's draw does not depend on which other classes are kept. The test split is untouched;
    every class keeps at least one train image (else DataError).

    With label noise put on (`clean_label` present) the classes drawn from are the true ones, so
    the same images are held out whatever the noise (a noisy arm and the clean arm of an
    experiment train on the same images, only their labels differ), and the held-out images keep
    their observed labels, as a user's noisy validation folder would."""
    if fraction <= 0:
        return manifest
    manifest = manifest.copy()
    label, name = ("clean_label", "clean_class_name") if "clean_label" in manifest.columns else ("label", "class_name")
    for _, group in manifest[manifest.split == "train"].groupby(label, sort=True):
        count = validation_count(len(group), fraction)
        if count >= len(group):
            raise DataError(
                f"class {group[name].iloc[0]!r} has {len(group)} train image(s): `source.validation_fraction` "
                f"{fraction} leaves none to train on; lower it, or add images"
            )
        rng = np.random.default_rng([seed, zlib.crc32(str(group[name].iloc[0]).encode())])
        manifest.loc[rng.choice(group.index.to_numpy(), count, replace=False), "split"] = "val"
    emptied = sorted(set(manifest.class_name[manifest.split != "test"]) - set(manifest.class_name[manifest.split == "train"]))
    if emptied:  # only the noisy labels of a tiny class can all fall into the held-out images
        raise DataError(f"observed class(es) {emptied} keep no train image after `source.validation_fraction` "
                        f"{fraction}: lower it, or add images")
    return manifest
