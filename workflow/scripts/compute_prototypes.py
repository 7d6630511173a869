from detdistill.stages.generation import compute_prototypes
from detdistill.workflow import setup

setup(snakemake)
compute_prototypes(
    latents_path=snakemake.input.latents,
    ipc=int(snakemake.wildcards.ipc),
    seed=snakemake.params.seed,
    n_init=snakemake.params.prototypes["n_init"],
    out_path=snakemake.output.prototypes,
)
