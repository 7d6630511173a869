import pandas as pd

from detdistill.data import class_names
from detdistill.stages import detect_anomalies
from detdistill.workflow import setup

setup(snakemake)
detect_anomalies(
    snakemake.input.scores,
    snakemake.input.detector_test_scores,
    snakemake.params.beta,
    class_names(pd.read_parquet(snakemake.input.manifest)),
    snakemake.output.anomalies,
    snakemake.output.report,
)
