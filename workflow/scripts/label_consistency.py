from detdistill.stages.classifiers import label_consistency
from detdistill.workflow import setup

setup(snakemake)
label_consistency(
    judge_path=snakemake.input.judge,
    set_paths=snakemake.input.sets,
    out_csv=snakemake.output.consistency,
)
