from detdistill.stages import train_generator
from detdistill.workflow import setup

setup(snakemake)
train_generator(
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.params.image_size,
    snakemake.params.generator,
    snakemake.output.generator,
)
