from detdistill.stages.evaluation import replicates
from detdistill.workflow import setup

setup(snakemake)
seeds = snakemake.params.seeds
evals = list(snakemake.input.evals)
per_construction = len(evals) // len(seeds)  # the same methods and models for every construction, in order
replicates(
    dataset=snakemake.wildcards.dataset,
    ipc=int(snakemake.wildcards.ipc),
    seeds=seeds,
    eval_paths=[evals[i * per_construction : (i + 1) * per_construction] for i in range(len(seeds))],
    out_csv=snakemake.output.table,
    out_paired=snakemake.output.paired,
    out_md=snakemake.output.markdown,
)
