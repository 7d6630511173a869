from detdistill.stages.sweeps import knob_sweep
from detdistill.workflow import setup, split_evenly

setup(snakemake)
values = snakemake.params.values
knob_sweep(
    dataset=snakemake.wildcards.dataset,
    ipc=int(snakemake.wildcards.ipc),
    knob=snakemake.wildcards.knob,
    values=values,
    configured=snakemake.params.configured,
    eval_paths=split_evenly(snakemake.input.evals, len(values)),  # the same files per point, in order
    anomalies_paths=list(snakemake.input.anomalies),
    reference_paths=list(snakemake.input.reference),
    out_csv=snakemake.output.table,
    out_md=snakemake.output.markdown,
    out_png=snakemake.output.figure,
)
