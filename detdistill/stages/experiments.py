"""The label-noise experiment rule (detdistill.experiments): the arms' tables into one."""

from __future__ import annotations

import logging

import pandas as pd

from .. import io

log = logging.getLogger("detdistill")


def noise_experiment(*, name: str, ipc: int, arms: list[dict], summaries, consistencies, runs, manifests, trust_samples,
                     generator_note: str, out_csv, out_paired, out_md) -> None:
    """`summaries`, `consistencies`, `runs` (per-run accuracy tables) and `manifests` follow `arms`;
    `trust_samples` follows the trust-aware arms among them."""
    from ..experiments import arm_label_scores, experiment_markdown, experiment_table, paired_rows

    samples = iter(trust_samples)
    arm_rows = []
    for arm, manifest_path in zip(arms, manifests, strict=True):
        scores = arm_label_scores(pd.read_parquet(manifest_path), pd.read_parquet(next(samples)) if arm["trust"] else None)
        arm_rows.append({"dataset": arm["dataset"], "setting": arm["setting"], "pipeline": arm["pipeline"], **scores})
        log.info("arm %s: %s", arm["dataset"], scores)
    table = experiment_table(arm_rows, [pd.read_csv(p) for p in summaries], [pd.read_csv(p) for p in consistencies])
    paired = paired_rows({arm["dataset"]: pd.read_csv(p) for arm, p in zip(arms, runs, strict=True)}, arms)
    io.write_csv(table, out_csv)
    io.write_csv(paired, out_paired)
    io.write_text(experiment_markdown(name, table, paired, generator_note, ipc), out_md)
