from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"
configfile: "config/imagenette.yaml"
configfile: "config/imagewoof.yaml"
configfile: "config/cifar10.yaml"
configfile: "config/noise.yaml"


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


rule all:
    default_target: True
    input:
        "results/digits_ipc10.csv",
