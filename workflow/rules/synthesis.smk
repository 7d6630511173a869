rule synthesize_initial:
    input:
        prototypes="results/{dataset}/ipc{ipc}/prototypes.parquet",
        generator=get_generator,
    output:
        images=directory("results/{dataset}/ipc{ipc}/initial/class{label}"),
    params:
        synthesis=get_synthesis_config,
        seed=config["seed"],
    resources:
        gpu=1,
    priority: SET_PATH_PRIORITY
    log:
        "logs/synthesize_initial/{dataset}_ipc{ipc}_class{label}.log",
    benchmark:
        "benchmarks/synthesize_initial/{dataset}_ipc{ipc}_class{label}.tsv"
    script:
        "../scripts/synthesize_initial.py"


rule generate_candidates:
    input:
        anomalies="results/{dataset}/ipc{ipc}/anomalies.parquet",
        prototypes="results/{dataset}/ipc{ipc}/prototypes.parquet",
        generator=get_generator,
        detector="results/{dataset}/classifiers/detector/model.safetensors",
    output:
        candidates=directory("results/{dataset}/ipc{ipc}/candidates/class{label}"),
    params:
        synthesis=get_synthesis_config,
        n_candidates=get_n_candidates,
        seed=config["seed"],
    resources:
        gpu=1,
    priority: SET_PATH_PRIORITY
    log:
        "logs/generate_candidates/{dataset}_ipc{ipc}_class{label}.log",
    benchmark:
        "benchmarks/generate_candidates/{dataset}_ipc{ipc}_class{label}.tsv"
    script:
        "../scripts/generate_candidates.py"
