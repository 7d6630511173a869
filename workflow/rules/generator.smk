# embedded backend: trains the small latent diffusion model; sd15: records where the local Stable
# Diffusion weights are (checked offline) and the prompt settings.
rule prepare_generator:
    input:
        manifest=get_train_manifest,
    output:
        generator=directory("results/{dataset}/generator"),
    log:
        "logs/prepare_generator/{dataset}.log",
    benchmark:
        "benchmarks/prepare_generator/{dataset}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        source=get_source,
        image_size=get_image_size,
        generator=get_generator_config,
    script:
        "../scripts/prepare_generator.py"


rule encode_latents:
    input:
        manifest=get_train_manifest,
        generator=get_generator,
    output:
        latents="results/{dataset}/latents.parquet",
    log:
        "logs/encode_latents/{dataset}.log",
    benchmark:
        "benchmarks/encode_latents/{dataset}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        source=get_source,
        # real images loaded at the generator's working size (generator.image_size, sd15)
        image_size=get_generation_size,
    script:
        "../scripts/encode_latents.py"
