from detdistill.calibration import score_validation
from detdistill.workflow import setup

setup(snakemake)
score_validation(
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.params.image_size,
    snakemake.input.detector,
    snakemake.output.scores,
)
