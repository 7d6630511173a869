# embedded backend: trains the small latent diffusion model; sd15: records where the local Stable
# Diffusion weights are (checked offline) and the prompt settings.
rule prepare_generator:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
    output:
        generator=directory("results/{dataset}/generator"),
    params:
        source=get_source,
        image_size=get_image_size,
        generator=get_generator_config,
    threads: 2
    resources:
        gpu=1,
    priority: SET_PATH_PRIORITY
    log:
        "logs/prepare_generator/{dataset}.log",
    benchmark:
        "benchmarks/prepare_generator/{dataset}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/prepare_generator.py"


rule encode_latents:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        generator=get_generator,
    output:
        latents="results/{dataset}/latents.parquet",
    params:
        source=get_source,
        image_size=get_image_size,
    threads: 2
    resources:
        gpu=1,
    priority: SET_PATH_PRIORITY
    log:
        "logs/encode_latents/{dataset}.log",
    benchmark:
        "benchmarks/encode_latents/{dataset}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/encode_latents.py"
