from snakemake.utils import min_version

from detdistill.workflow import check_config_files, report_failed_jobs

min_version("9.0")

# each file checked first: Snakemake's message for one that does not parse names no file or line
for config_path in check_config_files(
    [
        "config/config.yaml",
        "config/imagenette.yaml",
        "config/imagewoof.yaml",
        "config/cifar10.yaml",
        "config/noise.yaml",
    ]
):

    configfile: config_path


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/trust.smk"
include: "workflow/rules/generator.smk"
include: "workflow/rules/prototypes.smk"
include: "workflow/rules/synthesis.smk"
include: "workflow/rules/detector.smk"
include: "workflow/rules/anomalies.smk"
include: "workflow/rules/refinement.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/quality.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/replicates.smk"


# each failed job's cause repeated as the run's last lines, below Snakemake's own about the failure
onerror:
    report_failed_jobs(workflow, log)


rule all:
    default_target: True
    input:
        "results/digits_ipc10.csv",
