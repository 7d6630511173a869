from detdistill.stages import prepare_generator
from detdistill.workflow import setup

setup(snakemake)
prepare_generator(
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.params.image_size,
    snakemake.params.generator,
    snakemake.output.generator,
)
