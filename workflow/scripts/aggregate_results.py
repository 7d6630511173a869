from detdistill.stages.evaluation import aggregate
from detdistill.workflow import setup

setup(snakemake)
aggregate(
    eval_paths=snakemake.input.tables,
    out_csv=snakemake.output.table,
    out_summary=snakemake.output.summary,
    out_paired=snakemake.output.paired,
    out_paired_md=snakemake.output.paired_md,
    title=f"{snakemake.wildcards.dataset} IPC {snakemake.wildcards.ipc}",
    ipc=int(snakemake.wildcards.ipc),
    comparison=snakemake.params.comparison,
    published_path=snakemake.input.published,
)
