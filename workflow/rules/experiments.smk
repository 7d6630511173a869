# Label-noise experiments (detdistill.experiments): `noise_experiments.<name>` in the config
# adds one dataset per arm (clean labels; per noise setting plain and trust-aware), and this rule
# puts their tables side by side: results/experiments/<name>.md.


rule noise_experiment:
    input:
        unpack(get_experiment_inputs),
    output:
        table="results/experiments/{experiment}.csv",
        paired="results/experiments/{experiment}_paired.csv",
        markdown=report(
            "results/experiments/{experiment}.md",
            caption="../report/noise_experiment.rst",
            category="Label-noise experiments",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}"},
        ),
    log:
        "logs/noise_experiment/{experiment}.log",
    benchmark:
        "benchmarks/noise_experiment/{experiment}.tsv"
    conda:
        "../envs/detdistill.yaml"
    params:
        ipc=lambda wildcards: experiment_spec(wildcards)["ipc"],
        arms=get_experiment_arms,
        generator_note=get_experiment_generator_note,
    script:
        "../scripts/noise_experiment.py"
