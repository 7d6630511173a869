from detdistill.stages import synthesize_initial
from detdistill.workflow import setup

setup(snakemake)
synthesize_initial(
    snakemake.input.prototypes,
    snakemake.params.labels,
    snakemake.input.generator,
    snakemake.params.synthesis,
    snakemake.params.seed,
    snakemake.output.images,
    cache_dir=snakemake.params.cache,
)
