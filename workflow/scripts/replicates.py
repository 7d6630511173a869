from detdistill.stages.evaluation import replicates
from detdistill.workflow import setup, split_evenly

setup(snakemake)
seeds = snakemake.params.seeds
replicates(
    dataset=snakemake.wildcards.dataset,
    ipc=int(snakemake.wildcards.ipc),
    seeds=seeds,
    eval_paths=split_evenly(snakemake.input.evals, len(seeds)),  # the same files per point, in order
    out_csv=snakemake.output.table,
    out_paired=snakemake.output.paired,
    out_md=snakemake.output.markdown,
)
