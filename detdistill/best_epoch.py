"""Best-epoch test accuracy (`evaluation.report_best_epoch`), Minimax's protocol for ImageNette
and ImageWoof: the highest test accuracy seen while training, measured every N epochs.

The epoch is selected on the test split itself, so the figure is optimistic: it is reported in its
own columns (`best_epoch_test_accuracy`, `best_epoch`, and in the summary
`best_epoch_test_selected_mean`/`_std`) for comparison with Minimax's numbers, beside the
final-epoch `test_accuracy`, which stays the headline."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

COLUMN = "best_epoch_test_accuracy"
#: the summary's columns (mean, std over seeds, in %)
SUMMARY_MEAN, SUMMARY_STD = "best_epoch_test_selected_mean", "best_epoch_test_selected_std"
EPOCH_COLUMN = "best_epoch"


def measured_epochs(eval_cfg: dict, epochs: int) -> Callable[[int], bool]:
    """Which 1-based epochs the test accuracy is measured after (the last always is): every
    `best_epoch_every` epochs, or `epochs // best_epoch_evaluations` when that is set (Minimax:
    every E // 100); with `best_epoch_after` f > 0, only epochs past f x E (RDED: every 10
    epochs in the last fifth, `epoch > 0.8 E` with its 0-based epochs)."""
    every = int(eval_cfg.get("best_epoch_every", 1))
    if eval_cfg.get("best_epoch_evaluations"):
        every = max(1, epochs // int(eval_cfg["best_epoch_evaluations"]))
    after = float(eval_cfg.get("best_epoch_after", 0.0))
    return lambda epoch: epoch % every == 0 and (after == 0 or epoch - 1 > after * epochs)


class BestEpochTracker:
    """Test accuracy of each run at the epochs `train_classifiers` reports (its `on_evaluate` hook)."""

    def __init__(self, runs: int, measure: Callable[[int], float]):
        """`measure(i)`: the test accuracy of run i's model as it is now."""
        self.measure = measure
        self.curves: list[list[tuple[int, float]]] = [[] for _ in range(runs)]

    def __call__(self, epoch: int, run_indices: list[int]) -> None:
        for i in run_indices:
            self.curves[i].append((epoch, self.measure(i)))

    def best(self, run: int) -> dict:
        """{best_epoch_test_accuracy, best_epoch} of a run; ties go to the earliest epoch."""
        if not self.curves[run]:
            raise ValueError(f"run {run} was never measured")
        epoch, acc = max(self.curves[run], key=lambda point: (point[1], -point[0]))
        return {COLUMN: acc, EPOCH_COLUMN: epoch}


def add_percent_column(table: pd.DataFrame) -> pd.DataFrame:
    """The per-run table with `best_epoch_test_accuracy_pct` where the runs measured it."""
    if COLUMN in table.columns:
        table[f"{COLUMN}_pct"] = 100 * table[COLUMN]
    return table


def summary_columns(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame | None:
    """Per (model, method): mean and std of the test-selected best-epoch accuracy (%), labelled as
    such; None when the runs did not measure it."""
    if COLUMN not in table.columns:
        return None
    return (
        table.groupby(keys, sort=True)[f"{COLUMN}_pct"]
        .agg(**{SUMMARY_MEAN: "mean", SUMMARY_STD: "std"})
        .reset_index()
        .round({SUMMARY_MEAN: 2, SUMMARY_STD: 2})
    )
