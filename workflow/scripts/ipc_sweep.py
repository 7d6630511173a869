from detdistill.stages.sweeps import ipc_sweep
from detdistill.workflow import setup

setup(snakemake)
ipc_sweep(
    dataset=snakemake.wildcards.dataset,
    ipcs=snakemake.params.ipcs,
    summary_paths=list(snakemake.input.summaries),
    out_csv=snakemake.output.table,
    out_md=snakemake.output.markdown,
    out_png=snakemake.output.figure,
)
