# Real-data baselines chosen in the detector's feature space (random is in data.smk: it needs no
# detector). The train features are scored once per dataset and shared by every IPC and method.
rule score_train_features:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        detector="results/{dataset}/classifiers/detector/model.safetensors",
    output:
        features="results/{dataset}/classifiers/detector/train_features.parquet",
    params:
        source=get_source,
        image_size=get_image_size,
    resources:
        gpu=1,
    log:
        "logs/score_train_features/{dataset}.log",
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/score_train_features.py"


rule select_feature_subset:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        features="results/{dataset}/classifiers/detector/train_features.parquet",
    output:
        subset="results/{dataset}/ipc{ipc}/sets/{method}.parquet",
    wildcard_constraints:
        method="|".join(FEATURE_BASELINES),
    params:
        seed=config["seed"],
    log:
        "logs/select_feature_subset/{dataset}_ipc{ipc}_{method}.log",
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/select_feature_subset.py"
