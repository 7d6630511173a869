from detdistill.stages import select_feature_subset
from detdistill.workflow import setup

setup(snakemake)
select_feature_subset(
    snakemake.input.manifest,
    snakemake.input.features,
    snakemake.wildcards.method,
    int(snakemake.wildcards.ipc),
    snakemake.params.seed,
    snakemake.output.subset,
)
