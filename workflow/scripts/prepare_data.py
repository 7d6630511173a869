from detdistill.stages import prepare_data
from detdistill.workflow import setup

setup(snakemake)
prepare_data(snakemake.params.source, snakemake.params.seed, snakemake.output.manifest, threads=snakemake.threads)
