from detdistill.stages import encode_latents
from detdistill.workflow import setup

setup(snakemake)
encode_latents(
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.params.image_size,
    snakemake.input.generator,
    snakemake.output.latents,
)
