from detdistill.stages import evaluate
from detdistill.workflow import setup

setup(snakemake)
evaluate(
    snakemake.input.subset,
    snakemake.input.manifest,
    snakemake.params.source,
    snakemake.wildcards.model,
    snakemake.params.evaluation,
    # Wildcards is a list: `in` alone would look among the values, not the names
    int(snakemake.wildcards.ipc) if "ipc" in snakemake.wildcards.keys() else None,  # noqa: SIM118
    snakemake.output.scores,
)
