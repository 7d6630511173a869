from detdistill.quality import set_quality
from detdistill.workflow import setup

setup(snakemake)
quality = snakemake.params.quality
set_quality(
    snakemake.input.judge,
    snakemake.input.manifest,
    snakemake.input.sets,
    snakemake.params.source,
    snakemake.params.image_size,
    reference_images=quality["reference_images"],
    nearest_k=quality["nearest_k"],
    seed=snakemake.params.seed,
    inception_weights_path=quality["inception_weights"],
    out_csv=snakemake.output.quality,
)
