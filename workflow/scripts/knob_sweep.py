from detdistill.stages.sweeps import knob_sweep
from detdistill.workflow import setup

setup(snakemake)
values = snakemake.params.values
evals = list(snakemake.input.evals)
per_point = len(evals) // len(values)  # the same methods and models at every point, in order
knob_sweep(
    dataset=snakemake.wildcards.dataset,
    ipc=int(snakemake.wildcards.ipc),
    knob=snakemake.wildcards.knob,
    values=values,
    configured=snakemake.params.configured,
    eval_paths=[evals[i * per_point : (i + 1) * per_point] for i in range(len(values))],
    anomalies_paths=list(snakemake.input.anomalies),
    reference_paths=list(snakemake.input.reference),
    out_csv=snakemake.output.table,
    out_md=snakemake.output.markdown,
    out_png=snakemake.output.figure,
)
