# Set-construction replicates (detdistill.replicates): `replicates.seeds` adds the datasets
# <name>_rep<seed>; this rule puts the main run's and their evaluations side by side.


rule replicates:
    input:
        evals=get_replicate_evals,
    output:
        table="results/{dataset}_ipc{ipc}_replicates.csv",
        paired="results/{dataset}_ipc{ipc}_replicates_paired.csv",
        markdown=report(
            "results/{dataset}_ipc{ipc}_replicates.md",
            caption="../report/replicates.rst",
            category="Accuracy",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "table": "set-construction replicates"},
        ),
    log:
        "logs/replicates/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/replicates/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    params:
        seeds=get_replicate_seeds,
    script:
        "../scripts/replicates.py"
