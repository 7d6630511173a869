from detdistill.stages.sets import select_random_subset
from detdistill.workflow import setup

setup(snakemake)
select_random_subset(
    manifest_path=snakemake.input.manifest,
    ipc=int(snakemake.wildcards.ipc),
    seed=snakemake.params.seed,
    out_path=snakemake.output.subset,
)
