from detdistill.stages.sets import refinement_figures
from detdistill.workflow import setup

setup(snakemake)
refinement_figures(
    anomalies_path=snakemake.input.anomalies,
    candidate_dirs=snakemake.input.candidates,
    set_paths={"conf": snakemake.input.conf, "sim": snakemake.input.sim, "conf_sim": snakemake.input.conf_sim},
    top_k=snakemake.params.top_k,
    out_flagged=snakemake.output.flagged,
    out_candidates=snakemake.output.candidates,
)
