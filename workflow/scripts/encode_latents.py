from detdistill.stages.generation import encode_latents
from detdistill.workflow import setup

setup(snakemake)
encode_latents(
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    image_size=snakemake.params.image_size,
    generator_dir=snakemake.input.generator,
    out_path=snakemake.output.latents,
)
