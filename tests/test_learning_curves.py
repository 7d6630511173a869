"""Learning curves of the evaluation runs (detdistill.learning_curves): the per-run tables' curve
columns on a tiny training, the long table, and the figure."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from detdistill import data, learning_curves
from detdistill.learning_curves import ACCURACY_COLUMN, EPOCH_COLUMN, LOSS_COLUMN
from detdistill.stages import evaluation

DIGITS = {"kind": "digits", "test_fraction": 0.2}
EPOCHS = 4
EVAL_CFG = {"seeds": [0, 1], "image_size": 8, "width": 4, "full_epochs": EPOCHS,
            "train": {"epochs": EPOCHS, "batch_size": 64, "lr": 0.05, "flip": False, "cutmix_alpha": 0}}


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("curves") / "manifest.parquet"
    data.build_manifest({**DIGITS, "classes": ["0", "1", "2"]}, seed=0).to_parquet(path)
    return path


def _full_data_runs(manifest_path, out, **eval_cfg) -> pd.DataFrame:
    evaluation.evaluate_full(manifest_path=manifest_path, source_cfg=DIGITS, model_name="convnet",
                             eval_cfg={**EVAL_CFG, **eval_cfg}, out_path=out)
    return pd.read_parquet(out)


@pytest.fixture(scope="module")
def runs(manifest_path):
    """The two seeds' full-data runs measured every 2 epochs, and the same runs unmeasured."""
    folder = manifest_path.parent
    return {"measured": _full_data_runs(manifest_path, folder / "measured.parquet", report_best_epoch=True, best_epoch_every=2),
            "plain": _full_data_runs(manifest_path, folder / "plain.parquet")}


def test_curve_columns_hold_the_measured_epochs_and_every_epochs_loss(runs):
    measured = runs["measured"]
    for run in measured.to_dict("records"):
        assert run[EPOCH_COLUMN].tolist() == [2, 4]  # best_epoch_every 2: epochs 2 and 4 (the last)
        # the last point is the final-epoch accuracy the table reports; the best is the curve's maximum
        assert run[ACCURACY_COLUMN][-1] == run["test_accuracy"]
        assert run["best_epoch_test_accuracy"] == max(run[ACCURACY_COLUMN])
        assert run["best_epoch"] == run[EPOCH_COLUMN][int(np.argmax(run[ACCURACY_COLUMN]))]
        losses = run[LOSS_COLUMN]
        assert len(losses) == EPOCHS and np.isfinite(losses).all()
        assert losses[-1] < losses[0]  # a ConvNet on 3 digit classes learns in 4 epochs
    # the seeds trained differently: each row holds its own run's losses
    assert measured[LOSS_COLUMN].iloc[0].tolist() != measured[LOSS_COLUMN].iloc[1].tolist()


def test_unmeasured_runs_have_the_final_accuracy_as_their_one_point(runs):
    plain, measured = runs["plain"], runs["measured"]
    assert [e.tolist() for e in plain[EPOCH_COLUMN]] == [[EPOCHS]] * 2
    assert [a.tolist() for a in plain[ACCURACY_COLUMN]] == [[a] for a in plain.test_accuracy]
    # measuring draws nothing from the runs: the same training, the same losses and final accuracy
    assert [v.tolist() for v in plain[LOSS_COLUMN]] == [v.tolist() for v in measured[LOSS_COLUMN]]
    assert plain.test_accuracy.tolist() == measured.test_accuracy.tolist()


def test_a_per_seed_run_and_its_merge_keep_that_seeds_curve(runs, manifest_path, tmp_path):
    """Rule evaluate_full_seed's table of seed 1 holds the curve of the two-seed table's seed-1 row
    (a run depends on its seed only), and merge_seed_runs keeps the list columns."""
    paths = []
    for seed in (0, 1):
        paths.append(tmp_path / f"seed{seed}.parquet")
        evaluation.evaluate_full(manifest_path=manifest_path, source_cfg=DIGITS, model_name="convnet", eval_cfg=EVAL_CFG,
                                 out_path=paths[-1], seeds=[seed])
    evaluation.merge_seed_runs(paths, seeds=[0, 1], out_path=tmp_path / "merged.parquet")
    merged = pd.read_parquet(tmp_path / "merged.parquet")
    for column in learning_curves.COLUMNS:
        assert [v.tolist() for v in merged[column]] == [v.tolist() for v in runs["plain"][column]], column


def test_stacked_seeds_record_the_curves_of_the_runs_in_turn(runs, manifest_path, tmp_path):
    """evaluation.stack_seeds on (one vmapped model) records each run's losses and measured points as
    the runs in turn do (float32: equal up to rounding, at most one test image apart)."""
    stacked = _full_data_runs(manifest_path, tmp_path / "stacked.parquet", report_best_epoch=True, best_epoch_every=2,
                              stack_seeds="on")
    in_turn = runs["measured"]
    test_images = (pd.read_parquet(manifest_path).split == "test").sum()
    for a, b in zip(stacked.to_dict("records"), in_turn.to_dict("records"), strict=True):
        assert a[EPOCH_COLUMN].tolist() == b[EPOCH_COLUMN].tolist()
        assert a[LOSS_COLUMN] == pytest.approx(b[LOSS_COLUMN], rel=1e-4)
        assert a[ACCURACY_COLUMN] == pytest.approx(b[ACCURACY_COLUMN], abs=1.01 / test_images)
        assert a[ACCURACY_COLUMN][-1] == a["test_accuracy"]


def _old_table(test_accuracy=(0.5, 0.6)) -> pd.DataFrame:
    """A per-run table written before the curve columns existed."""
    return pd.DataFrame({"method": "d4m", "model": "convnet", "seed": [0, 1], "train_images": 20, "epochs": 3,
                         "test_accuracy": list(test_accuracy)})


def test_long_table_rows_per_epoch_and_not_recorded_runs(runs, tmp_path):
    old = tmp_path / "old.parquet"
    _old_table().to_parquet(old)
    new = tmp_path / "new.parquet"
    runs["measured"].to_parquet(new)
    out_csv, out_png = tmp_path / "curves.csv", tmp_path / "curves.png"
    evaluation.learning_curves(eval_paths=[old, new], out_csv=out_csv, out_png=out_png, title="digits: learning curves")
    table = pd.read_csv(out_csv)
    assert list(table.columns) == learning_curves.LONG_COLUMNS
    full = table[table.method == "full"]
    # one row per seed and epoch; the accuracy only where measured (empty elsewhere)
    assert full.groupby("seed").epoch.apply(list).tolist() == [[1, 2, 3, 4]] * 2
    assert full.test_accuracy.isna().tolist() == [True, False, True, False] * 2
    assert full.curve_recorded.all()
    last = full[full.epoch == EPOCHS].set_index("seed").test_accuracy
    assert last.tolist() == pytest.approx(runs["measured"].set_index("seed").test_accuracy.tolist(), rel=1e-12)
    assert full.train_loss.tolist() == pytest.approx(np.concatenate(runs["measured"][LOSS_COLUMN].tolist()).tolist(), rel=1e-12)
    # the earlier run's table: one row per run, at its final epoch, marked not recorded
    old_rows = table[table.method == "d4m"]
    assert old_rows[["seed", "epoch", "test_accuracy"]].values.tolist() == [[0, 3, 0.5], [1, 3, 0.6]]
    assert not old_rows.curve_recorded.any() and old_rows.train_loss.isna().all()
    with Image.open(out_png) as image:
        assert image.format == "PNG"
        assert 300 < image.width < 3000 and 300 < image.height < 3000, image.size


def test_aggregating_old_and_new_tables_leaves_the_curves_out_of_the_per_run_csv(runs, tmp_path):
    old = tmp_path / "old.parquet"
    _old_table().to_parquet(old)
    new = tmp_path / "new.parquet"
    runs["plain"].to_parquet(new)
    out = {name: tmp_path / f"{name}.csv" for name in ("table", "summary", "paired")}
    evaluation.aggregate(eval_paths=[old, new], out_csv=out["table"], out_summary=out["summary"], out_paired=out["paired"],
                         out_paired_md=tmp_path / "paired.md", title="digits")
    table = pd.read_csv(out["table"])
    assert not set(learning_curves.COLUMNS) & set(table.columns)
    assert table.test_accuracy.tolist() == pytest.approx([0.5, 0.6, *runs["plain"].test_accuracy])


def test_figure_of_tables_without_curves_says_not_recorded(monkeypatch):
    """A table without curve columns still gives a figure; its panel carries the note."""
    from matplotlib.figure import Figure

    texts, original = [], Figure.savefig

    def capture(self, *args, **kwargs):
        texts.extend(t.get_text() for ax in self.axes for t in ax.texts)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    png = learning_curves.figure(learning_curves.long_table(_old_table()), "old: learning curves")
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 150
    assert learning_curves.NOT_RECORDED in texts


def test_figure_bytes_are_reproducible(runs):
    long = learning_curves.long_table(runs["measured"])
    assert learning_curves.figure(long, "t") == learning_curves.figure(long, "t")


def test_run_columns_reject_a_history_with_missing_epochs():
    history = [{"epoch": 1, "loss": 1.0}, {"epoch": 3, "loss": 0.5}]
    with pytest.raises(ValueError, match=r"expected 1\.\.3"):
        learning_curves.run_columns(history, None, 0.5, 3)
