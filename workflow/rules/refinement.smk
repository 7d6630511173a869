rule build_refined_set:
    input:
        anomalies="results/{dataset}/ipc{ipc}/anomalies.parquet",
        candidates=get_candidate_dirs,
    output:
        refined="results/{dataset}/ipc{ipc}/sets/{method}.parquet",
        sheet=report(
            "results/{dataset}/ipc{ipc}/sets/{method}.png",
            caption="../report/set.rst",
            category="Synthetic sets",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "method": "{method}"},
        ),
    log:
        "logs/build_refined_set/{dataset}_ipc{ipc}_{method}.log",
    benchmark:
        "benchmarks/build_refined_set/{dataset}_ipc{ipc}_{method}.tsv"
    wildcard_constraints:
        method="d4m|conf|sim|conf_sim",
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    params:
        # beta is read from the anomaly table (the betas that flagged the images)
        top_k=get_top_k,
        normal_set=get_normal_set,
    script:
        "../scripts/build_refined_set.py"


# The report's pictures of the refinement (detdistill.figures): flagged images beside their
# replacements, and each flagged image's candidates with their softmax and the choices marked.
rule refinement_figures:
    input:
        anomalies="results/{dataset}/ipc{ipc}/anomalies.parquet",
        candidates=get_candidate_dirs,
        conf="results/{dataset}/ipc{ipc}/sets/conf.parquet",
        sim="results/{dataset}/ipc{ipc}/sets/sim.parquet",
        conf_sim="results/{dataset}/ipc{ipc}/sets/conf_sim.parquet",
    output:
        flagged=report(
            "results/{dataset}/ipc{ipc}/figures/flagged.png",
            caption="../report/flagged.rst",
            category="Refinement",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "picture": "flagged and replaced"},
        ),
        candidates=report(
            "results/{dataset}/ipc{ipc}/figures/candidates.png",
            caption="../report/candidates.rst",
            category="Refinement",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}", "picture": "candidates"},
        ),
    log:
        "logs/refinement_figures/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/refinement_figures/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    params:
        top_k=lambda wildcards: dataset_config(wildcards)["refinement"]["top_k"],
    script:
        "../scripts/refinement_figures.py"
