"""The sweep rules (detdistill.sweeps): a knob's points, or the IPCs, into one table and plot."""

from __future__ import annotations

import logging

import pandas as pd

from .. import io

log = logging.getLogger("detdistill")


def knob_sweep(*, dataset: str, ipc: int, knob: str, values: list, configured, eval_paths: list[list[str]], anomalies_paths: list[str],
               reference_paths: list[str], out_csv, out_md, out_png) -> None:
    """`eval_paths[i]` and `anomalies_paths[i]`: the evaluation tables and the anomaly table of
    `values[i]`'s point (the main tree's for the configured value); `reference_paths`: d4m's."""
    from ..sweeps import plot, reference_rows, sweep_markdown, sweep_table

    # one read per anomaly table: every top-k point shares the main run's
    flagged_by_path = {path: int(pd.read_parquet(path, columns=["defective"]).defective.sum()) for path in set(anomalies_paths)}
    points = []
    for value, paths, anomalies in zip(values, eval_paths, anomalies_paths, strict=True):
        runs = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
        flagged = flagged_by_path[anomalies]
        points.append({"value": value, "configured": value == configured, "runs": runs, "flagged": flagged})
        log.info("%s %s: %d flagged, %d runs", knob, value, flagged, len(runs))
    reference_runs = pd.concat([pd.read_parquet(p) for p in reference_paths], ignore_index=True)
    table = sweep_table(knob, points, reference_runs)
    reference = reference_rows(reference_runs)
    io.write_csv(table, out_csv)
    io.write_text(sweep_markdown(dataset, ipc, knob, table, reference), out_md)
    figure = plot(table.rename(columns={"value": knob}), knob, f"{dataset} IPC {ipc}: accuracy against {knob}", reference,
                  configured=configured)
    io.write_bytes(figure, out_png)


def ipc_sweep(*, dataset: str, ipcs: list[int], summary_paths: list[str], out_csv, out_md, out_png) -> None:
    from ..sweeps import ipc_markdown, ipc_table, plot

    table = ipc_table({ipc: pd.read_csv(path) for ipc, path in zip(ipcs, summary_paths, strict=True)})
    io.write_csv(table, out_csv)
    io.write_text(ipc_markdown(dataset, table), out_md)
    io.write_bytes(plot(table, "ipc", f"{dataset}: accuracy against images per class"), out_png)


def paper_tables(*, dataset: str, ipcs: list[int], summary_paths, paired_paths, quality_paths, consistency_paths, out_md,
                 out_accuracy, out_quality, out_consistency, comparison: dict | None = None, published_path=None) -> None:
    """Each path list follows `ipcs`. `comparison`: detdistill.published.counterpart's answer (the
    headline figure; the published accuracies are in the summaries already, Table IV's are read
    from `published_path`)."""
    from .. import published
    from ..paper_tables import accuracy_long, stacked, tables_markdown

    def by_ipc(paths):
        return {ipc: pd.read_csv(path) for ipc, path in zip(ipcs, paths, strict=True)}

    comparison = comparison or published.NOT_COMPARED
    accuracy = accuracy_long(by_ipc(summary_paths), by_ipc(paired_paths), comparison["headline"])
    quality, consistency = stacked(by_ipc(quality_paths)), stacked(by_ipc(consistency_paths))
    io.write_csv(accuracy, out_accuracy)
    io.write_csv(quality, out_quality)
    io.write_csv(consistency, out_consistency)
    published_quality = (published.quality_markdown(published.load(published_path), comparison["dataset"])
                         if comparison.get("dataset") and published_path else "")
    io.write_text(tables_markdown(dataset, accuracy, quality, consistency, comparison, published_quality), out_md)
