from detdistill.stages import score_train_features
from detdistill.workflow import setup

setup(snakemake)
score_train_features(
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.params.image_size,
    snakemake.input.detector,
    snakemake.output.features,
)
