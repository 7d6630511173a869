from detdistill.stages import evaluate
from detdistill.workflow import setup

setup(snakemake)
evaluate(
    snakemake.input.subset,
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.params.image_size,
    snakemake.wildcards.model,
    snakemake.params.evaluation,
    snakemake.params.evaluation["seeds"],
    snakemake.output.scores,
)
