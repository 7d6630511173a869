rule prepare_data:
    output:
        manifest="results/{dataset}/data/manifest.parquet",
    params:
        source=get_source,
        seed=config["seed"],
    log:
        "logs/prepare_data/{dataset}.log",
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/prepare_data.py"


rule select_random_subset:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
    output:
        subset="results/{dataset}/ipc{ipc}/sets/random.parquet",
    params:
        seed=config["seed"],
    log:
        "logs/select_random_subset/{dataset}_ipc{ipc}.log",
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/select_random_subset.py"
