# The detector flags synthetic images; the judge (another architecture and seed) only measures
# label consistency, so refinement is never graded by the model that drove it. A classifier with
# `weights` is loaded from that file instead of trained (detdistill.checkpoints), with the same
# outputs; role teacher is an `evaluation.teacher` entry, the rded protocol's soft-label teacher.
rule train_classifier:
    input:
        manifest=get_train_manifest,
    output:
        model="results/{dataset}/classifiers/{role}/model.safetensors",
        metrics="results/{dataset}/classifiers/{role}/metrics.json",
        test_scores="results/{dataset}/classifiers/{role}/test_scores.parquet",
    log:
        "logs/train_classifier/{dataset}_{role}.log",
    benchmark:
        "benchmarks/train_classifier/{dataset}_{role}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        source=get_source,
        image_size=get_image_size,
        classifier=get_classifier_config,
    script:
        "../scripts/train_classifier.py"


rule score_initial:
    input:
        initial=get_initial_dirs,
        detector="results/{dataset}/classifiers/detector/model.safetensors",
    output:
        scores="results/{dataset}/ipc{ipc}/initial_scores.parquet",
    log:
        "logs/score_initial/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/score_initial/{dataset}_ipc{ipc}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    resources:
        gpu=1,
    script:
        "../scripts/score_initial.py"


# The detector's target softmax on the validation split (real train-split images no model trained
# on): what a calibrated beta is read from (refinement.beta_mode, detdistill.calibration).
rule score_validation:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        detector="results/{dataset}/classifiers/detector/model.safetensors",
    output:
        scores="results/{dataset}/classifiers/detector/validation_scores.parquet",
    log:
        "logs/score_validation/{dataset}.log",
    benchmark:
        "benchmarks/score_validation/{dataset}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    resources:
        gpu=1,
    params:
        source=get_source,
        image_size=get_image_size,
    script:
        "../scripts/score_validation.py"
