from detdistill.stages import aggregate
from detdistill.workflow import setup

setup(snakemake)
aggregate(
    snakemake.input.tables,
    snakemake.output.table,
    snakemake.output.summary,
    snakemake.output.paired,
    snakemake.output.paired_md,
    f"{snakemake.wildcards.dataset} IPC {snakemake.wildcards.ipc}",
)
