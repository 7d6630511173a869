from detdistill.stages import label_consistency
from detdistill.workflow import setup

setup(snakemake)
label_consistency(snakemake.input.judge, snakemake.input.sets, snakemake.output.consistency)
