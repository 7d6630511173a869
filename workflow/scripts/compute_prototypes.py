from detdistill.stages import compute_prototypes
from detdistill.workflow import setup

setup(snakemake)
compute_prototypes(
    snakemake.input.latents,
    int(snakemake.wildcards.ipc),
    snakemake.params.seed,
    snakemake.params.prototypes["n_init"],
    snakemake.output.prototypes,
)
