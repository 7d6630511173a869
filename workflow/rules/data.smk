rule prepare_data:
    output:
        manifest="results/{dataset}/data/manifest.parquet",
    params:
        source=get_source,
        seed=config["seed"],
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
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
    benchmark:
        "benchmarks/select_random_subset/{dataset}_ipc{ipc}.tsv"
    script:
        "../scripts/select_random_subset.py"
