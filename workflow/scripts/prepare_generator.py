from detdistill.stages.generation import prepare_generator
from detdistill.workflow import setup

setup(snakemake)
prepare_generator(
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    image_size=snakemake.params.image_size,
    generator_cfg=snakemake.params.generator,
    out_dir=snakemake.output.generator,
)
