rule compute_prototypes:
    input:
        latents="results/{dataset}/latents.parquet",
    output:
        prototypes="results/{dataset}/ipc{ipc}/prototypes.parquet",
    log:
        "logs/compute_prototypes/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/compute_prototypes/{dataset}_ipc{ipc}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    params:
        seed=get_construction_seed,
        prototypes=get_prototype_config,
    script:
        "../scripts/compute_prototypes.py"
