rule prepare_data:
    output:
        manifest="results/{dataset}/data/manifest.parquet",
    log:
        "logs/prepare_data/{dataset}.log",
        # every image file that cannot be read, with the reason: a log, so a refusal keeps it
        unreadable="results/{dataset}/data/unreadable.txt",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../envs/detdistill.yaml"
    # every image file is decoded once here, so a broken one stops the run before any training
    threads: 1
    params:
        source=get_source,
        # rebuilds the manifest when the image files change (names, sizes, modification times)
        files=get_source_fingerprint,
        seed=config["seed"],
    script:
        "../scripts/prepare_data.py"


rule select_random_subset:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
    output:
        subset="results/{dataset}/ipc{ipc}/sets/random.parquet",
    log:
        "logs/select_random_subset/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/select_random_subset/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    params:
        seed=config["seed"],
    script:
        "../scripts/select_random_subset.py"
