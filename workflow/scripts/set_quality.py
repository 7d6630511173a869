from detdistill.quality import set_quality
from detdistill.workflow import setup

setup(snakemake)
quality = snakemake.params.quality
set_quality(
    judge_path=snakemake.input.judge,
    manifest_path=snakemake.input.manifest,
    set_paths=snakemake.input.sets,
    source_cfg=snakemake.params.source,
    image_size=snakemake.params.image_size,
    reference_images=quality["reference_images"],
    nearest_k=quality["nearest_k"],
    seed=snakemake.params.seed,
    inception_weights_path=quality["inception_weights"],
    out_csv=snakemake.output.quality,
)
