import pandas as pd

from detdistill.data import class_names
from detdistill.stages import detect_anomalies
from detdistill.workflow import setup

setup(snakemake)
calibration = snakemake.params.calibration
detect_anomalies(
    snakemake.input.scores,
    snakemake.input.detector_test_scores,
    snakemake.params.beta,
    class_names(pd.read_parquet(snakemake.input.manifest)),
    snakemake.output.anomalies,
    snakemake.output.report,
    beta_mode=calibration["mode"],
    beta_quantile=calibration.get("quantile"),
    # an empty input list in fixed mode
    validation_scores_path=snakemake.input.validation_scores or None,
)
