from detdistill.stages.evaluation import evaluate
from detdistill.workflow import setup

setup(snakemake)
evaluate(
    set_path=snakemake.input.subset,
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    model_name=snakemake.wildcards.model,
    eval_cfg=snakemake.params.evaluation,
    ipc=int(snakemake.wildcards.ipc),
    out_path=snakemake.output.scores,
)
