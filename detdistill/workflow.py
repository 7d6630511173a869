"""Glue between Snakemake's `script:` object and the stage functions."""

from __future__ import annotations

import logging
import sys


def setup(snakemake) -> logging.Logger:
    """Send logging, warnings and tqdm (stderr) to the rule's log file; honour `threads:`."""
    import torch

    log_path = snakemake.log[0]
    # open for the rest of the job: it becomes the process's stderr
    stream = open(log_path, "w", buffering=1)  # noqa: SIM115
    sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(stream)],
        force=True,
    )
    logging.captureWarnings(True)
    torch.set_num_threads(max(1, int(snakemake.threads)))
    logger = logging.getLogger("detdistill")
    logger.info("rule %s, wildcards %s, threads %s", snakemake.rule, dict(snakemake.wildcards), snakemake.threads)
    return logger
