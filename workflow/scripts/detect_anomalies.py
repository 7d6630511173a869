from detdistill.stages.anomalies import detect_anomalies
from detdistill.workflow import setup

setup(snakemake)
detect_anomalies(
    scores_path=snakemake.input.scores,
    detector_test_scores_path=snakemake.input.detector_test_scores,
    manifest_path=snakemake.input.manifest,
    beta=snakemake.params.beta,
    out_parquet=snakemake.output.anomalies,
    out_report=snakemake.output.report,
)
