from detdistill.stages.classifiers import score_train_features
from detdistill.workflow import setup

setup(snakemake)
score_train_features(
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    image_size=snakemake.params.image_size,
    detector_path=snakemake.input.detector,
    out_path=snakemake.output.features,
)
