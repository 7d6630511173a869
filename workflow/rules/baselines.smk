# Real-data baselines chosen in the detector's feature space (random is in data.smk: it needs no
# detector). The train features are scored once per dataset and shared by every IPC and method.
rule score_train_features:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        detector="results/{dataset}/classifiers/detector/model.safetensors",
    output:
        features="results/{dataset}/classifiers/detector/train_features.parquet",
    log:
        "logs/score_train_features/{dataset}.log",
    conda:
        "../envs/detdistill.yaml"
    resources:
        gpu=1,
    params:
        source=get_source,
        image_size=get_image_size,
    script:
        "../scripts/score_train_features.py"


rule select_feature_subset:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        features="results/{dataset}/classifiers/detector/train_features.parquet",
    output:
        subset="results/{dataset}/ipc{ipc}/sets/{method}.parquet",
    log:
        "logs/select_feature_subset/{dataset}_ipc{ipc}_{method}.log",
    wildcard_constraints:
        method="|".join(FEATURE_BASELINES),
    conda:
        "../envs/detdistill.yaml"
    params:
        seed=config["seed"],
    script:
        "../scripts/select_feature_subset.py"
