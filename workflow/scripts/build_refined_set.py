from detdistill.stages import build_refined_set
from detdistill.workflow import setup

setup(snakemake)
build_refined_set(
    snakemake.input.anomalies,
    snakemake.input.candidates,
    snakemake.wildcards.method,
    snakemake.params.top_k,
    snakemake.output.refined,
    snakemake.output.sheet,
    normal_set=snakemake.params.normal_set,
)
