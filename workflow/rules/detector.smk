# The detector flags synthetic images; the judge (another architecture and seed) only measures
# label consistency, so refinement is never graded by the model that drove it.
rule train_classifier:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
    output:
        model="results/{dataset}/classifiers/{role}/model.safetensors",
        metrics="results/{dataset}/classifiers/{role}/metrics.json",
        test_scores="results/{dataset}/classifiers/{role}/test_scores.parquet",
    params:
        source=get_source,
        image_size=get_image_size,
        classifier=get_classifier_config,
    threads: 2
    resources:
        gpu=1,
    priority: SET_PATH_PRIORITY
    log:
        "logs/train_classifier/{dataset}_{role}.log",
    benchmark:
        "benchmarks/train_classifier/{dataset}_{role}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/train_classifier.py"


rule score_initial:
    input:
        initial=get_initial_dirs,
        detector="results/{dataset}/classifiers/detector/model.safetensors",
    output:
        scores="results/{dataset}/ipc{ipc}/initial_scores.parquet",
    resources:
        gpu=1,
    priority: SET_PATH_PRIORITY
    log:
        "logs/score_initial/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/score_initial/{dataset}_ipc{ipc}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/score_initial.py"
