from detdistill.stages.classifiers import score_validation
from detdistill.workflow import setup

setup(snakemake)
score_validation(
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    image_size=snakemake.params.image_size,
    detector_path=snakemake.input.detector,
    out_path=snakemake.output.scores,
)
