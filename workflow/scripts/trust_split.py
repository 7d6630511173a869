from detdistill.stages.trust import trust_split
from detdistill.workflow import setup

setup(snakemake)
trust_split(
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    image_size=snakemake.params.image_size,
    detector_cfg=snakemake.params.detector,
    trust_cfg=snakemake.params.trust,
    seed=snakemake.params.seed,
    dataset=snakemake.wildcards.dataset,
    out_samples=snakemake.output.samples,
    out_rounds=snakemake.output.rounds,
    out_manifest=snakemake.output.manifest,
)
