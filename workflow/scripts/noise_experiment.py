from detdistill.stages.experiments import noise_experiment
from detdistill.workflow import setup

setup(snakemake)
noise_experiment(
    name=snakemake.wildcards.experiment,
    ipc=snakemake.params.ipc,
    arms=snakemake.params.arms,
    summaries=snakemake.input.summaries,
    consistencies=snakemake.input.consistencies,
    runs=snakemake.input.runs,
    manifests=snakemake.input.manifests,
    trust_samples=snakemake.input.trust_samples,
    generator_note=snakemake.params.generator_note,
    out_csv=snakemake.output.table,
    out_paired=snakemake.output.paired,
    out_md=snakemake.output.markdown,
)
