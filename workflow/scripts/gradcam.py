from detdistill.stages.evaluation import gradcam
from detdistill.workflow import setup

setup(snakemake)
gradcam(
    set_paths={method: snakemake.input[method] for method in snakemake.params.gradcam["methods"]},
    manifest_path=snakemake.input.manifest,
    source_cfg=snakemake.params.source,
    eval_cfg=snakemake.params.evaluation,
    gradcam_cfg=snakemake.params.gradcam,
    ipc=int(snakemake.wildcards.ipc),
    title=f"Grad-CAM, {snakemake.wildcards.dataset} IPC {snakemake.wildcards.ipc}: "
    f"{snakemake.params.gradcam['model']} trained on each set (seed {snakemake.params.evaluation['seeds'][0]})",
    out_png=snakemake.output.picture,
    out_table=snakemake.output.table,
)
