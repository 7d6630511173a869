rule detect_anomalies:
    input:
        scores="results/{dataset}/ipc{ipc}/initial_scores.parquet",
        manifest="results/{dataset}/data/manifest.parquet",
        detector_test_scores="results/{dataset}/classifiers/detector/test_scores.parquet",
        # calibrated beta only (refinement.beta_mode); never the test split
        validation_scores=get_validation_scores,
    output:
        anomalies="results/{dataset}/ipc{ipc}/anomalies.parquet",
        report=report(
            "results/{dataset}/ipc{ipc}/anomalies.md",
            caption="../report/anomalies.rst",
            category="Anomaly report",
            subcategory="{dataset} IPC {ipc}",
            labels={"dataset": "{dataset}", "IPC": "{ipc}"},
        ),
    log:
        "logs/detect_anomalies/{dataset}_ipc{ipc}.log",
    benchmark:
        "benchmarks/detect_anomalies/{dataset}_ipc{ipc}.tsv"
    priority: SET_PATH_PRIORITY
    conda:
        "../envs/detdistill.yaml"
    params:
        beta=get_beta,
        calibration=get_beta_calibration,
    script:
        "../scripts/detect_anomalies.py"
