from detdistill.stages.classifiers import score_initial
from detdistill.workflow import setup

setup(snakemake)
score_initial(
    initial_dirs=snakemake.input.initial,
    detector_path=snakemake.input.detector,
    out_path=snakemake.output.scores,
)
