from detdistill.stages.sets import select_feature_subset
from detdistill.workflow import setup

setup(snakemake)
select_feature_subset(
    manifest_path=snakemake.input.manifest,
    features_path=snakemake.input.features,
    method=snakemake.wildcards.method,
    ipc=int(snakemake.wildcards.ipc),
    seed=snakemake.params.seed,
    out_path=snakemake.output.subset,
)
