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
        ),
    wildcard_constraints:
        method="d4m|conf|sim|conf_sim",
    params:
        beta=get_beta,
        top_k=get_top_k,
    priority: SET_PATH_PRIORITY
    log:
        "logs/build_refined_set/{dataset}_ipc{ipc}_{method}.log",
    benchmark:
        "benchmarks/build_refined_set/{dataset}_ipc{ipc}_{method}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/build_refined_set.py"
