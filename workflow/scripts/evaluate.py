from detdistill.stages import evaluate
from detdistill.workflow import setup

setup(snakemake)
evaluate(
    snakemake.input.subset,
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.wildcards.model,
    snakemake.params.evaluation,
    int(snakemake.wildcards.ipc) if "ipc" in snakemake.wildcards.keys() else None,
    snakemake.output.scores,
)
