from detdistill.stages import select_random_subset
from detdistill.workflow import setup

setup(snakemake)
select_random_subset(snakemake.input.manifest, int(snakemake.wildcards.ipc), snakemake.params.seed, snakemake.output.subset)
