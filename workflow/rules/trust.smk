# Mislabeled training data (TAD, detdistill.trust): split each class into trusted and untrusted
# images, recalibrate the reliable untrusted ones; with `trust.enabled` the generator, the latents
# (so the prototypes) and the detector train on the trusted manifest. The judge never does.
rule trust_split:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
    output:
        samples="results/{dataset}/trust/samples.parquet",
        rounds=report(
            "results/{dataset}/trust/rounds.md",
            caption="../report/trust.rst",
            category="Trust-aware split",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}"},
        ),
        manifest="results/{dataset}/trust/manifest.parquet",
    log:
        "logs/trust_split/{dataset}.log",
    benchmark:
        "benchmarks/trust_split/{dataset}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        source=get_source,
        image_size=get_image_size,
        detector=get_section("detector"),
        trust=get_section("trust"),
        seed=config["seed"],
    script:
        "../scripts/trust_split.py"
