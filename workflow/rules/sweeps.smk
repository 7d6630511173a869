# Sweeps (detdistill.sweeps, `sweeps` in the config): accuracy against beta and top-k at one IPC,
# and against IPC. A beta or top-k point mirrors the main tree under
# results/{dataset}/ipc{ipc}/sweep/{point}/ as far as the knob reaches; the rules below are the
# main ones with the point's paths and knob value (`use rule`), so the stages run the same code.
SWEEP_DIR = "results/{dataset}/ipc{ipc}/sweep"


use rule detect_anomalies as sweep_detect_anomalies with:
    input:
        scores="results/{dataset}/ipc{ipc}/initial_scores.parquet",
        manifest="results/{dataset}/data/manifest.parquet",
        detector_test_scores="results/{dataset}/classifiers/detector/test_scores.parquet",
        validation_scores=[],
    output:
        anomalies=f"{SWEEP_DIR}/beta{{beta}}/anomalies.parquet",
        report=f"{SWEEP_DIR}/beta{{beta}}/anomalies.md",
    log:
        "logs/sweep_detect_anomalies/{dataset}_ipc{ipc}_beta{beta}.log",
    benchmark:
        "benchmarks/sweep_detect_anomalies/{dataset}_ipc{ipc}_beta{beta}.tsv"
    params:
        beta=lambda wildcards: knob_value("beta", wildcards.beta),
        calibration={"mode": "fixed"},


# the image cache (synthesis.smk) holds every candidate another beta already generated
use rule generate_candidates as sweep_generate_candidates with:
    input:
        anomalies=f"{SWEEP_DIR}/beta{{beta}}/anomalies.parquet",
        prototypes="results/{dataset}/ipc{ipc}/prototypes.parquet",
        generator=get_generator,
        detector="results/{dataset}/classifiers/detector/model.safetensors",
    output:
        candidates=directory(f"{SWEEP_DIR}/beta{{beta}}/candidates/part{{part}}"),
    log:
        "logs/sweep_generate_candidates/{dataset}_ipc{ipc}_beta{beta}_part{part}.log",
    benchmark:
        "benchmarks/sweep_generate_candidates/{dataset}_ipc{ipc}_beta{beta}_part{part}.tsv"


use rule build_refined_set as sweep_beta_refined_set with:
    input:
        anomalies=f"{SWEEP_DIR}/beta{{beta}}/anomalies.parquet",
        candidates=get_sweep_candidate_dirs,
    output:
        refined=f"{SWEEP_DIR}/beta{{beta}}/sets/{{method}}.parquet",
        sheet=f"{SWEEP_DIR}/beta{{beta}}/sets/{{method}}.png",
    log:
        "logs/sweep_beta_refined_set/{dataset}_ipc{ipc}_beta{beta}_{method}.log",
    benchmark:
        "benchmarks/sweep_beta_refined_set/{dataset}_ipc{ipc}_beta{beta}_{method}.tsv"
    wildcard_constraints:
        method="conf|sim|conf_sim",


# top-k reaches conf_sim alone: the main anomalies and candidates
use rule build_refined_set as sweep_top_k_refined_set with:
    output:
        refined=f"{SWEEP_DIR}/top_k{{top_k}}/sets/{{method}}.parquet",
        sheet=f"{SWEEP_DIR}/top_k{{top_k}}/sets/{{method}}.png",
    log:
        "logs/sweep_top_k_refined_set/{dataset}_ipc{ipc}_top_k{top_k}_{method}.log",
    benchmark:
        "benchmarks/sweep_top_k_refined_set/{dataset}_ipc{ipc}_top_k{top_k}_{method}.tsv"
    wildcard_constraints:
        method="conf_sim",
    params:
        top_k=lambda wildcards: knob_value("top_k", wildcards.top_k),
        normal_set=get_normal_set,


use rule evaluate as sweep_evaluate with:
    input:
        subset=f"{SWEEP_DIR}/{{point}}/sets/{{method}}.parquet",
        manifest="results/{dataset}/data/manifest.parquet",
        teacher=get_teacher,
    output:
        scores=f"{SWEEP_DIR}/{{point}}/eval/{{method}}/{{model}}.parquet",
    log:
        "logs/sweep_evaluate/{dataset}_ipc{ipc}_{point}_{method}_{model}.log",
    benchmark:
        "benchmarks/sweep_evaluate/{dataset}_ipc{ipc}_{point}_{method}_{model}.tsv"


rule knob_sweep:
    input:
        unpack(get_knob_sweep_inputs),
    output:
        table="results/{dataset}_ipc{ipc}_sweep_{knob}.csv",
        markdown=report(
            "results/{dataset}_ipc{ipc}_sweep_{knob}.md",
            caption="../report/sweep.rst",
            category="Sweeps",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "sweep": "{knob}", "file": "table"},
        ),
        figure=report(
            "results/{dataset}_ipc{ipc}_sweep_{knob}.png",
            caption="../report/sweep.rst",
            category="Sweeps",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "sweep": "{knob}", "file": "plot"},
        ),
    log:
        "logs/knob_sweep/{dataset}_ipc{ipc}_{knob}.log",
    benchmark:
        "benchmarks/knob_sweep/{dataset}_ipc{ipc}_{knob}.tsv"
    conda:
        "../envs/detdistill.yaml"
    params:
        values=lambda wildcards: dataset_config(wildcards)["sweeps"][wildcards.knob],
        configured=get_configured_knob_value,
    script:
        "../scripts/knob_sweep.py"


rule ipc_sweep:
    input:
        summaries=get_ipc_sweep_summaries,
    output:
        table="results/{dataset}_sweep_ipc.csv",
        markdown=report(
            "results/{dataset}_sweep_ipc.md",
            caption="../report/sweep.rst",
            category="Sweeps",
            subcategory="{dataset} IPC",
            labels={"dataset": "{dataset}", "sweep": "ipc", "file": "table"},
        ),
        figure=report(
            "results/{dataset}_sweep_ipc.png",
            caption="../report/sweep.rst",
            category="Sweeps",
            subcategory="{dataset} IPC",
            labels={"dataset": "{dataset}", "sweep": "ipc", "file": "plot"},
        ),
    log:
        "logs/ipc_sweep/{dataset}.log",
    benchmark:
        "benchmarks/ipc_sweep/{dataset}.tsv"
    conda:
        "../envs/detdistill.yaml"
    params:
        ipcs=lambda wildcards: dataset_config(wildcards)["sweeps"]["ipc"],
    script:
        "../scripts/ipc_sweep.py"


# The paper's tables (detdistill.paper_tables) from the IPCs of the IPC sweep
rule paper_tables:
    input:
        unpack(get_per_ipc_tables),
        # the paper's figures, beside ours where the runs have a published counterpart
        published="resources/paper/zou_published.csv",
    output:
        markdown=report(
            "results/{dataset}_tables.md",
            caption="../report/paper_tables.rst",
            category="Accuracy",
            subcategory="{dataset} paper tables",
            labels={"dataset": "{dataset}", "table": "paper's tables"},
        ),
        accuracy="results/{dataset}_tables_accuracy.csv",
        quality="results/{dataset}_tables_quality.csv",
        consistency="results/{dataset}_tables_consistency.csv",
    log:
        "logs/paper_tables/{dataset}.log",
    benchmark:
        "benchmarks/paper_tables/{dataset}.tsv"
    conda:
        "../envs/detdistill.yaml"
    params:
        ipcs=lambda wildcards: dataset_config(wildcards)["sweeps"]["ipc"],
        comparison=get_published_comparison,
    script:
        "../scripts/paper_tables.py"
