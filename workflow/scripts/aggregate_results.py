from detdistill.stages import aggregate
from detdistill.workflow import setup

setup(snakemake)
aggregate(snakemake.input.tables, snakemake.output.table, snakemake.output.summary)
