rule train_generator:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
    output:
        generator=directory("results/{dataset}/generator"),
    params:
        source=get_source,
        image_size=get_image_size,
        generator=get_generator_config,
    resources:
        gpu=1,
    log:
        "logs/train_generator/{dataset}.log",
    benchmark:
        "benchmarks/train_generator/{dataset}.tsv"
    script:
        "../scripts/train_generator.py"


rule encode_latents:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        generator=get_generator,
    output:
        latents="results/{dataset}/latents.parquet",
    params:
        source=get_source,
        image_size=get_image_size,
    resources:
        gpu=1,
    log:
        "logs/encode_latents/{dataset}.log",
    benchmark:
        "benchmarks/encode_latents/{dataset}.tsv"
    script:
        "../scripts/encode_latents.py"
