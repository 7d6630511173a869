# One job per group of `synthesis.classes_per_job` classes (0: one job for all classes), so the
# Python/torch start-up is paid once per group and the generator sees batches across classes.
rule synthesize_initial:
    input:
        prototypes="results/{dataset}/ipc{ipc}/prototypes.parquet",
        generator=get_generator,
    output:
        images=directory("results/{dataset}/ipc{ipc}/initial/part{part}"),
    params:
        labels=get_part_labels,
        synthesis=get_synthesis_config,
        seed=config["seed"],
    threads: 2
    resources:
        gpu=1,
    priority: SET_PATH_PRIORITY
    log:
        "logs/synthesize_initial/{dataset}_ipc{ipc}_part{part}.log",
    benchmark:
        "benchmarks/synthesize_initial/{dataset}_ipc{ipc}_part{part}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/synthesize_initial.py"


rule generate_candidates:
    input:
        anomalies="results/{dataset}/ipc{ipc}/anomalies.parquet",
        prototypes="results/{dataset}/ipc{ipc}/prototypes.parquet",
        generator=get_generator,
        detector="results/{dataset}/classifiers/detector/model.safetensors",
    output:
        candidates=directory("results/{dataset}/ipc{ipc}/candidates/part{part}"),
    params:
        labels=get_part_labels,
        synthesis=get_synthesis_config,
        n_candidates=get_n_candidates,
        seed=config["seed"],
    threads: 2
    resources:
        gpu=1,
    priority: SET_PATH_PRIORITY
    log:
        "logs/generate_candidates/{dataset}_ipc{ipc}_part{part}.log",
    benchmark:
        "benchmarks/generate_candidates/{dataset}_ipc{ipc}_part{part}.tsv"
    conda:
        "../envs/detdistill.yaml"
    script:
        "../scripts/generate_candidates.py"
