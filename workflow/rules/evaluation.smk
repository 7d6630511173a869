rule evaluate:
    input:
        subset="results/{dataset}/ipc{ipc}/sets/{method}.parquet",
        manifest="results/{dataset}/data/manifest.parquet",
        teacher=get_teacher,
    output:
        scores="results/{dataset}/ipc{ipc}/eval/{method}/{model}.parquet",
    log:
        "logs/evaluate/{dataset}_ipc{ipc}_{method}_{model}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}_ipc{ipc}_{method}_{model}.tsv"
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        source=get_source,
        evaluation=get_evaluation_config,
    script:
        "../scripts/evaluate.py"


# The full-data upper bound: with `evaluation.full_data_jobs: per_model` this job trains the
# model's seeds in turn; with per_seed it merges the per-seed jobs' tables (rule
# evaluate_full_seed), the same runs and the same table.
rule evaluate_full:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        seed_runs=get_full_data_seed_runs,
    output:
        scores="results/{dataset}/eval_full/{model}.parquet",
    log:
        "logs/evaluate_full/{dataset}_{model}.log",
    benchmark:
        "benchmarks/evaluate_full/{dataset}_{model}.tsv"
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        # a merge of per-seed tables claims no GPU (a cluster gives it a CPU slot)
        gpu=lambda wildcards: 0 if get_full_data_seed_runs(wildcards) else 1,
    params:
        source=get_source,
        evaluation=get_full_evaluation_config,
    script:
        "../scripts/evaluate_full.py"


rule evaluate_full_seed:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
    output:
        scores="results/{dataset}/eval_full/{model}/seed{seed}.parquet",
    log:
        "logs/evaluate_full/{dataset}_{model}_seed{seed}.log",
    benchmark:
        "benchmarks/evaluate_full/{dataset}_{model}_seed{seed}.tsv"
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        source=get_source,
        evaluation=get_full_evaluation_config,
    script:
        "../scripts/evaluate_full.py"


rule label_consistency:
    input:
        judge=get_judge,
        sets=get_synthetic_sets,
    output:
        consistency="results/{dataset}_ipc{ipc}_consistency.csv",
    log:
        "logs/label_consistency/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/label_consistency/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    resources:
        gpu=1,
    script:
        "../scripts/label_consistency.py"


# Grad-CAM of one model trained on each compared set (the paper's Fig. 3): detdistill.gradcam.
rule gradcam:
    input:
        unpack(get_gradcam_sets),
        manifest="results/{dataset}/data/manifest.parquet",
        teacher=get_teacher,
    output:
        picture=report(
            "results/{dataset}/ipc{ipc}/figures/gradcam.png",
            caption="../report/gradcam.rst",
            category="Refinement",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "picture": "Grad-CAM"},
        ),
        table="results/{dataset}/ipc{ipc}/figures/gradcam.parquet",
    log:
        "logs/gradcam/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/gradcam/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        source=get_source,
        evaluation=get_gradcam_evaluation_config,
        gradcam=get_gradcam_config,
    script:
        "../scripts/gradcam.py"


# Test accuracy at the measured epochs and training loss per epoch of every evaluation run:
# detdistill.learning_curves.
rule learning_curves:
    input:
        tables=get_eval_tables,
    output:
        table="results/{dataset}_ipc{ipc}_learning_curves.csv",
        picture=report(
            "results/{dataset}/ipc{ipc}/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Accuracy",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "table": "learning curves (plot)"},
        ),
    log:
        "logs/learning_curves/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/learning_curves/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/learning_curves.py"


rule aggregate_results:
    input:
        tables=get_eval_tables,
        consistency="results/{dataset}_ipc{ipc}_consistency.csv",
        # not read: the dataset's final target builds its side tables and pictures (as the consistency one)
        quality="results/{dataset}_ipc{ipc}_quality.csv",
        figures="results/{dataset}/ipc{ipc}/figures/flagged.png",
        gradcam="results/{dataset}/ipc{ipc}/figures/gradcam.png",
        learning_curves="results/{dataset}/ipc{ipc}/figures/learning_curves.png",
        # the paper's figures, beside ours where the runs have a published counterpart
        published="resources/paper/zou_published.csv",
    output:
        table=report(
            "results/{dataset}_ipc{ipc}.csv",
            caption="../report/accuracy.rst",
            category="Accuracy",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "table": "per run"},
        ),
        summary="results/{dataset}_ipc{ipc}_summary.csv",
        paired="results/{dataset}_ipc{ipc}_paired.csv",
        paired_md=report(
            "results/{dataset}_ipc{ipc}_paired.md",
            caption="../report/paired.rst",
            category="Accuracy",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "table": "paired differences"},
        ),
    log:
        "logs/aggregate_results/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/aggregate_results/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    params:
        comparison=get_published_comparison,
    script:
        "../scripts/aggregate_results.py"
