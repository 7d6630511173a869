# One job per group of `synthesis.classes_per_job` classes (0: one job for all classes), so the
# Python/torch start-up is paid once per group and the generator sees batches across classes.
#
# Both generating rules go through the dataset's image cache (detdistill/cache.py): a side store
# of generated PNGs keyed by their content (generator files, prototype latent, seed, strength,
# guidance, steps, batch size, runtime). It is a param, not an output, on purpose: no re-run
# deletes it, so a changed beta or top-k generates only for newly flagged prototypes and a
# killed job's finished chunks are reused; an image is copied from it only when generating it
# again would give the same bytes. `rm -r results/{dataset}/cache` is always safe between runs.
IMAGE_CACHE = "results/{dataset}/cache/images"


rule synthesize_initial:
    input:
        prototypes="results/{dataset}/ipc{ipc}/prototypes.parquet",
        generator=get_generator,
    output:
        images=directory("results/{dataset}/ipc{ipc}/initial/part{part}"),
    log:
        "logs/synthesize_initial/{dataset}_ipc{ipc}_part{part}.log",
    benchmark:
        "benchmarks/synthesize_initial/{dataset}_ipc{ipc}_part{part}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        labels=get_part_labels,
        synthesis=get_synthesis_config,
        seed=get_construction_seed,
        cache=IMAGE_CACHE,
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
    log:
        "logs/generate_candidates/{dataset}_ipc{ipc}_part{part}.log",
    benchmark:
        "benchmarks/generate_candidates/{dataset}_ipc{ipc}_part{part}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        labels=get_part_labels,
        synthesis=get_synthesis_config,
        n_candidates=get_n_candidates,
        seed=get_construction_seed,
        cache=IMAGE_CACHE,
    script:
        "../scripts/generate_candidates.py"
