from detdistill.stages.generation import generate_candidates
from detdistill.workflow import setup

setup(snakemake)
generate_candidates(
    anomalies_path=snakemake.input.anomalies,
    prototypes_path=snakemake.input.prototypes,
    labels=snakemake.params.labels,
    generator_dir=snakemake.input.generator,
    detector_path=snakemake.input.detector,
    synthesis_cfg=snakemake.params.synthesis,
    n_candidates=snakemake.params.n_candidates,
    seed=snakemake.params.seed,
    out_dir=snakemake.output.candidates,
    cache_dir=snakemake.params.cache,
)
