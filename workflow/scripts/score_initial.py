from detdistill.stages import score_initial
from detdistill.workflow import setup

setup(snakemake)
score_initial(snakemake.input.initial, snakemake.input.detector, snakemake.output.scores)
