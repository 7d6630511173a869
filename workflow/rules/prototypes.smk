rule compute_prototypes:
    input:
        latents="results/{dataset}/latents.parquet",
    output:
        prototypes="results/{dataset}/ipc{ipc}/prototypes.parquet",
    params:
        seed=config["seed"],
        prototypes=get_prototype_config,
    priority: SET_PATH_PRIORITY
    log:
        "logs/compute_prototypes/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/compute_prototypes/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/compute_prototypes.py"
