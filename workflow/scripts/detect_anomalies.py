from detdistill.stages.anomalies import detect_anomalies
from detdistill.workflow import setup

setup(snakemake)
calibration = snakemake.params.calibration
detect_anomalies(
    scores_path=snakemake.input.scores,
    detector_test_scores_path=snakemake.input.detector_test_scores,
    manifest_path=snakemake.input.manifest,
    beta=snakemake.params.beta,
    beta_mode=calibration["mode"],
    beta_quantile=calibration.get("quantile"),
    # an empty input list in fixed mode
    validation_scores_path=snakemake.input.validation_scores or None,
    out_parquet=snakemake.output.anomalies,
    out_report=snakemake.output.report,
)
