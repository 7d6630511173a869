from detdistill.stages import train_classifier_stage
from detdistill.workflow import setup

setup(snakemake)
train_classifier_stage(
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.params.image_size,
    snakemake.params.classifier,
    snakemake.output.model,
    snakemake.output.metrics,
    snakemake.output.test_scores,
)
