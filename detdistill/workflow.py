"""Glue between Snakemake's `script:` object and the stage functions."""

from __future__ import annotations

import atexit
import logging
import resource
import sys

#: the line each job's log ends with; bench/memory_cifar10.py reads it
PEAK_RSS_PREFIX = "peak RSS (kernel high-water mark):"


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB, from the kernel (Linux reports ru_maxrss in KiB).
    Exact, unlike Snakemake's `benchmark:` max_rss, which samples every 30 s after a job's first
    15 s and so can miss a short peak."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(snakemake) -> logging.Logger:
    """Send logging, warnings and tqdm (stderr) to the rule's log file; honour `threads:`."""
    import torch

    log_path = snakemake.log[0]
    stream = open(log_path, "w", buffering=1)
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
    # registered after logging's own exit hook, so it runs first (atexit is last-in, first-out)
    atexit.register(lambda: logger.info("%s %.1f MiB", PEAK_RSS_PREFIX, peak_rss_mb()))
    return logger
