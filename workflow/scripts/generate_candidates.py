from detdistill.stages import generate_candidates
from detdistill.workflow import setup

setup(snakemake)
generate_candidates(
    snakemake.input.anomalies,
    snakemake.input.prototypes,
    snakemake.params.labels,
    snakemake.input.generator,
    snakemake.input.detector,
    snakemake.params.synthesis,
    snakemake.params.n_candidates,
    snakemake.params.seed,
    snakemake.output.candidates,
    cache_dir=snakemake.params.cache,
)
