# FID / precision / recall / density / coverage of each set against the real train split, in the
# judge's feature space (and Inception's when its weights are on disk): detdistill.quality.
rule set_quality:
    input:
        judge=get_judge,
        manifest="results/{dataset}/data/manifest.parquet",
        sets=get_eval_sets,
    output:
        quality=report(
            "results/{dataset}_ipc{ipc}_quality.csv",
            caption="../report/quality.rst",
            category="Quality",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}"},
        ),
    log:
        "logs/set_quality/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/set_quality/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        source=get_source,
        image_size=get_image_size,
        quality=get_quality_config,
        seed=config["seed"],
    script:
        "../scripts/set_quality.py"
