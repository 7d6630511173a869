from detdistill.stages.manifest import prepare_data
from detdistill.workflow import setup

setup(snakemake)
prepare_data(
    source_cfg=snakemake.params.source,
    seed=snakemake.params.seed,
    out_manifest=snakemake.output.manifest,
    out_unreadable=snakemake.log.unreadable,
    threads=snakemake.threads,
)
