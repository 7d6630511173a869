from detdistill.stages.evaluation import evaluate_full
from detdistill.workflow import setup

setup(snakemake)
evaluate_full(
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    model_name=snakemake.wildcards.model,
    eval_cfg=snakemake.params.evaluation,
    out_path=snakemake.output.scores,
)
