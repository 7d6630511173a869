"""The trust rule (mislabeled training data, detdistill.trust): the trusted split and the manifest
the generator, the prototypes and the detector train on."""

from __future__ import annotations

import logging

import pandas as pd

from .. import data, io
from ..device import pick_device, seed_everything

log = logging.getLogger("detdistill")


def trust_split(*, manifest_path, source_cfg: dict, image_size: int, detector_cfg: dict, trust_cfg: dict, seed: int,
                dataset: str, out_samples, out_rounds, out_manifest) -> None:
    """The trust rule: split the train split of `manifest_path` with a classifier of the detector's
    architecture and training settings; write the per-sample table, the rounds' markdown and the
    manifest the generator, prototypes and detector train on."""
    from ..models import build_model
    from ..train import TrainConfig
    from ..trust import TrustConfig, per_class_table, rounds_markdown, split_by_trust, trusted_manifest
    from .classifiers import classifier_build

    manifest = pd.read_parquet(manifest_path)
    train = manifest[manifest.split == "train"].reset_index(drop=True)
    names = data.class_names(manifest)
    clean = train.clean_label.to_numpy() if "clean_label" in train.columns else None
    seed_everything(seed)
    model = build_model(**classifier_build(detector_cfg, len(names), image_size))
    images = data.load_images(train, source_cfg, image_size)
    samples, rounds = split_by_trust(model, images, train.label.to_numpy(), clean, len(names), TrainConfig.from_dict(detector_cfg["train"]),
                                  TrustConfig.from_dict(trust_cfg), pick_device(), seed)
    samples.insert(0, "image_id", train.image_id.to_numpy())
    io.write_parquet(samples, out_samples)
    io.write_text(rounds_markdown(rounds, clean is not None, dataset, per_class_table(samples, names)), out_rounds)
    io.write_parquet(trusted_manifest(manifest, samples, names), out_manifest)
    log.info("trusted %d of %d train images (%d recalibrated)", int(samples.trusted.sum()), len(samples), int(samples.recalibrated.sum()))
