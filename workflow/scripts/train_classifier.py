from detdistill.stages.classifiers import train_classifier
from detdistill.workflow import setup

setup(snakemake)
train_classifier(
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    image_size=snakemake.params.image_size,
    clf_cfg=snakemake.params.classifier,
    out_model=snakemake.output.model,
    out_metrics=snakemake.output.metrics,
    out_test_scores=snakemake.output.test_scores,
    # the judge learns the true labels where the manifest knows them (label-noise experiments)
    true_labels=snakemake.wildcards.role == "judge",
)
