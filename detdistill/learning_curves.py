"""Learning curves of the evaluation runs: whether a model was still learning at its last epoch.

Each per-run evaluation table (rules evaluate, evaluate_full, evaluate_full_seed) holds, per run,
three list columns:

- `curve_epoch`: the 1-based epochs its test accuracy was measured after: those of
  `evaluation.report_best_epoch` (`best_epoch.measured_epochs`, the last epoch always among them),
  or only the last epoch when the best epoch is not measured;
- `curve_test_accuracy`: the test accuracy (a fraction) at those epochs; its last entry is the
  run's final-epoch `test_accuracy`;
- `train_loss_per_epoch`: the mean training loss of every epoch, entry i for epoch i + 1 (the
  cross-entropy on the augmented, CutMixed batches; with a teacher, the KL to its soft labels).

Tables written before these columns existed still aggregate: their runs are "not recorded". The
long table (`long_table`, one row per run and epoch) and the figure (`figure`) are rule
learning_curves' outputs."""

from __future__ import annotations

import io as _io
import math

import numpy as np
import pandas as pd

EPOCH_COLUMN = "curve_epoch"
ACCURACY_COLUMN = "curve_test_accuracy"
LOSS_COLUMN = "train_loss_per_epoch"
#: the per-run table's curve columns (lists: the per-run CSV leaves them out, the long table holds them)
COLUMNS = (EPOCH_COLUMN, ACCURACY_COLUMN, LOSS_COLUMN)
#: the long table's columns; `test_accuracy` is empty at epochs where it was not measured
LONG_COLUMNS = ["model", "method", "seed", "epoch", "train_loss", "test_accuracy", "curve_recorded"]
NOT_RECORDED = "curve not recorded\n(table written before learning curves:\nre-run the evaluation to record it)"


def run_columns(history: list[dict], measured: list[tuple[int, float]] | None, final_accuracy: float, epochs: int) -> dict:
    """The curve columns of one run: `history` is its per-epoch training history
    (`train.train_classifiers`), `measured` its (epoch, test accuracy) points
    (`best_epoch.BestEpochTracker.curves`; None when not measured: the final accuracy is the one point)."""
    if [int(h["epoch"]) for h in history] != list(range(1, epochs + 1)):
        raise ValueError(f"a training history of epochs {[h['epoch'] for h in history][:5]}...; expected 1..{epochs}")
    points = measured or [(epochs, final_accuracy)]
    return {EPOCH_COLUMN: [int(epoch) for epoch, _ in points], ACCURACY_COLUMN: [float(acc) for _, acc in points],
            LOSS_COLUMN: [float(h["loss"]) for h in history]}


def without_curves(table: pd.DataFrame) -> pd.DataFrame:
    """The per-run table without its list columns (for CSV: one number per cell)."""
    return table.drop(columns=[c for c in COLUMNS if c in table.columns])


def _recorded(run: dict) -> bool:
    """Whether a run's row holds its curve (a table read from parquet gives arrays; older tables
    lack the columns, and concatenated with newer ones give missing values there)."""
    return all(isinstance(run.get(c), list | tuple | np.ndarray) for c in COLUMNS)


def long_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and epoch (LONG_COLUMNS), sorted by model, method, seed, epoch. A run
    without its curve gives one row, its final epoch and accuracy, with `curve_recorded` false."""
    rows = []
    for run in runs.to_dict("records"):
        key = {"model": run["model"], "method": run["method"], "seed": int(run["seed"])}
        if not _recorded(run):
            epoch = run.get("epochs")
            rows.append({**key, "epoch": None if pd.isna(epoch) else int(epoch), "train_loss": math.nan,
                         "test_accuracy": float(run["test_accuracy"]), "curve_recorded": False})
            continue
        measured = dict(zip((int(e) for e in run[EPOCH_COLUMN]), (float(a) for a in run[ACCURACY_COLUMN]), strict=True))
        losses = [float(v) for v in run[LOSS_COLUMN]]
        for epoch in sorted(set(range(1, len(losses) + 1)) | set(measured)):
            rows.append({**key, "epoch": epoch, "train_loss": losses[epoch - 1] if epoch <= len(losses) else math.nan,
                         "test_accuracy": measured.get(epoch, math.nan), "curve_recorded": True})
    table = pd.DataFrame(rows, columns=LONG_COLUMNS).astype({"epoch": "Int64"})
    return table.sort_values(["model", "method", "seed", "epoch"], kind="stable").reset_index(drop=True)


def _in_order(values, order: list | None) -> list:
    present = list(dict.fromkeys(values))
    return [v for v in (order or []) if v in present] + sorted(v for v in present if v not in (order or []))


def figure(long: pd.DataFrame, title: str, *, methods: list | None = None, models: list | None = None) -> bytes:
    """PNG bytes: one panel per (method, model), methods as rows and models as columns (in the
    orders given, others after by name): per seed, the test accuracy at the measured epochs (solid,
    left axis, %) and the training loss of every epoch (dashed, right axis, log scale), the final
    epoch a dotted line with its accuracy starred. Runs without a recorded curve say so."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from .sweeps import fit_title

    methods, models = _in_order(long.method, methods), _in_order(long.model, models)
    seeds = sorted(long.seed.unique())
    colours = {seed: plt.get_cmap("tab10")(i % 10) for i, seed in enumerate(seeds)}
    accuracy = 100 * long.test_accuracy.dropna()
    low, high = (max(0.0, accuracy.min() - 5), min(100.0, accuracy.max() + 5)) if len(accuracy) else (0.0, 100.0)
    fig, axes = plt.subplots(max(1, len(methods)), max(1, len(models)), figsize=(4.4 * max(1, len(models)), 2.6 * max(1, len(methods))),
                             squeeze=False)
    for r, method in enumerate(methods):
        for c, model in enumerate(models):
            _panel(axes[r][c], long[(long.method == method) & (long.model == model)], f"{method} / {model}", colours, (low, high))
    if not methods:
        axes[0][0].text(0.5, 0.5, "no evaluation runs", ha="center", va="center", transform=axes[0][0].transAxes)
        axes[0][0].set_axis_off()
    handles = [matplotlib.lines.Line2D([], [], color=colours[s], marker="o", label=f"seed {s}") for s in seeds]
    handles += [matplotlib.lines.Line2D([], [], color="#555555", label="test accuracy (%, left axis)"),
                matplotlib.lines.Line2D([], [], color="#555555", linestyle="--", label="training loss (right axis)"),
                matplotlib.lines.Line2D([], [], color="#999999", linestyle=":", label="final epoch"),
                matplotlib.lines.Line2D([], [], color="#555555", marker="*", linestyle="", markersize=10, label="final accuracy")]
    # the legend in as many rows as the figure's width needs (about 1.6 inches an entry), the title above it
    columns = max(2, min(len(handles), int(fig.get_figwidth() // 1.6)))
    title = fit_title(title, fig.get_figwidth())
    legend_in, title_in = 0.22 * math.ceil(len(handles) / columns) + 0.1, 0.25 * (title.count("\n") + 1) + 0.1
    height = fig.get_figheight()
    fig.legend(handles=handles, loc="upper center", ncol=columns, fontsize=8, bbox_to_anchor=(0.5, 1 - title_in / height),
               frameon=False)
    fig.suptitle(title, y=1.0, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - (title_in + legend_in) / height))
    buffer = _io.BytesIO()
    # no timestamp or version in the file: identical tables give identical bytes
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _panel(ax, rows: pd.DataFrame, name: str, colours: dict, accuracy_limits: tuple[float, float]) -> None:
    """One (method, model) panel of `figure`."""
    from matplotlib.ticker import MaxNLocator

    if rows.empty:
        ax.text(0.5, 0.5, f"{name}\nno runs", ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_axis_off()
        return
    final = rows.groupby("seed").apply(lambda run: run.loc[run.epoch.idxmax()], include_groups=False)
    final_pct = 100 * final.test_accuracy
    ax.set_title(f"{name}: final {final_pct.mean():.1f}%" + (f" ± {final_pct.std():.1f}" if len(final) > 1 else ""), fontsize=9)
    ax.set_ylim(*accuracy_limits)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("test accuracy (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    recorded = rows[rows.curve_recorded.astype(bool)]
    loss_ax = ax.twinx()
    loss_ax.tick_params(labelsize=7)
    for seed, run in recorded.groupby("seed", sort=True):
        measured = run.dropna(subset=["test_accuracy"])
        ax.plot(measured.epoch, 100 * measured.test_accuracy, color=colours[seed], marker="o", markersize=2.5, linewidth=1.2)
        losses = run.dropna(subset=["train_loss"])
        loss_ax.plot(losses.epoch, losses.train_loss, color=colours[seed], linestyle="--", linewidth=0.9, alpha=0.75)
    loss_values = recorded.train_loss.dropna()
    # log scale where the loss spans a decade or more; inside one, a log axis shows few or no labelled
    # ticks, so the linear scale reads better
    if len(loss_values) and (loss_values > 0).all() and loss_values.max() >= 10 * loss_values.min():
        from matplotlib.ticker import FuncFormatter

        loss_ax.set_yscale("log")
        # plain numbers (0.2, not 2 x 10^-1), the minor ticks labelled at 2 and 5 times a power of ten
        loss_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        loss_ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _leading_digit(v) in (2, 5) else ""))
        loss_ax.tick_params(which="minor", labelsize=7)
    if len(loss_values):
        loss_ax.set_ylabel("training loss", fontsize=8)
    else:
        loss_ax.set_yticks([])
    last_epoch = int(final.epoch.max()) if final.epoch.notna().any() else None
    if last_epoch is not None:
        ax.axvline(last_epoch, color="#999999", linestyle=":", linewidth=1)
        ax.set_xlim(0, last_epoch * 1.04 + 0.5)
    for seed, run in final.iterrows():
        if pd.notna(run.epoch):
            ax.plot([run.epoch], [100 * run.test_accuracy], color=colours[seed], marker="*", markersize=9, linestyle="")
    if len(recorded) < len(rows) or recorded.empty:
        ax.text(0.5, 0.5, NOT_RECORDED, ha="center", va="center", transform=ax.transAxes, fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#cccccc"})
    elif recorded.groupby("seed").test_accuracy.count().max() == 1:
        ax.text(0.02, 0.04, "accuracy measured at the final epoch only", transform=ax.transAxes, fontsize=7, color="#555555")


def _leading_digit(value: float) -> int:
    """The first significant digit of a positive tick value (0.2 -> 2, 50 -> 5)."""
    return round(value / 10 ** math.floor(math.log10(value)))
