from detdistill.stages.sets import build_refined_set
from detdistill.workflow import setup

setup(snakemake)
build_refined_set(
    anomalies_path=snakemake.input.anomalies,
    candidate_dirs=snakemake.input.candidates,
    method=snakemake.wildcards.method,
    top_k=snakemake.params.top_k,
    normal_set=snakemake.params.normal_set,
    out_path=snakemake.output.refined,
    out_png=snakemake.output.sheet,
)
