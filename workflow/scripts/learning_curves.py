from detdistill.stages.evaluation import learning_curves
from detdistill.workflow import setup

setup(snakemake)
learning_curves(
    eval_paths=snakemake.input.tables,
    out_csv=snakemake.output.table,
    out_png=snakemake.output.picture,
    title=f"{snakemake.wildcards.dataset} IPC {snakemake.wildcards.ipc}: learning curves of the evaluation runs",
)
