from detdistill.stages.generation import synthesize_initial
from detdistill.workflow import setup

setup(snakemake)
synthesize_initial(
    prototypes_path=snakemake.input.prototypes,
    labels=snakemake.params.labels,
    generator_dir=snakemake.input.generator,
    synthesis_cfg=snakemake.params.synthesis,
    seed=snakemake.params.seed,
    out_dir=snakemake.output.images,
    cache_dir=snakemake.params.cache,
)
