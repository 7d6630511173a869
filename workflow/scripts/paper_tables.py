from detdistill.stages.sweeps import paper_tables
from detdistill.workflow import setup

setup(snakemake)
paper_tables(
    dataset=snakemake.wildcards.dataset,
    ipcs=snakemake.params.ipcs,
    comparison=snakemake.params.comparison,
    published_path=snakemake.input.published,
    summary_paths=list(snakemake.input.summary),
    paired_paths=list(snakemake.input.paired),
    quality_paths=list(snakemake.input.quality),
    consistency_paths=list(snakemake.input.consistency),
    out_md=snakemake.output.markdown,
    out_accuracy=snakemake.output.accuracy,
    out_quality=snakemake.output.quality,
    out_consistency=snakemake.output.consistency,
)
