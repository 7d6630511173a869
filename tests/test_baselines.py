"""Herding and k-center selection on features with known answers; the stage on a hand-made
manifest; paired statistics against a hand computation."""

import math

import numpy as np
import pandas as pd
import pytest

from detdistill.baselines import herding, k_center_greedy, select
from detdistill.stages.sets import select_feature_subset
from detdistill.stats import (
    comparisons,
    paired_differences,
    paired_markdown,
    paired_row,
    t_interval,
)


def test_herding_first_pick_is_nearest_the_mean_then_balances_it():
    # mean (0, 0); row 2 is nearest it; then the pick that re-centres the running mean is the
    # mirror pair (1, 3) rather than the row next to the first pick
    features = np.array([[5.0, 0.0], [-4.0, 0.0], [0.5, 0.0], [4.0, 0.0], [-5.5, 0.0]])
    picks = herding(features, 3)
    assert picks[0] == 2
    assert sorted(picks[1:]) == [1, 3]
    assert len(set(herding(features, 5))) == 5  # without replacement


def test_herding_tracks_the_class_mean_better_than_random():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 8)) + rng.exponential(size=(200, 1)) * 3
    mean = features.mean(0)
    herded = np.linalg.norm(features[herding(features, 5)].mean(0) - mean)
    random_gaps = [np.linalg.norm(features[rng.choice(200, 5, replace=False)].mean(0) - mean) for _ in range(200)]
    assert herded < np.quantile(random_gaps, 0.05)


def test_k_center_reaches_the_far_outlier_cluster_and_covers_clusters():
    rng = np.random.default_rng(1)
    blobs = [rng.normal(scale=0.1, size=(30, 4)) + centre for centre in ([0, 0, 0, 0], [5, 0, 0, 0], [100, 100, 0, 0])]
    features = np.concatenate(blobs)  # rows 60..89: the far outlier cluster
    for seed in range(5):
        picks = k_center_greedy(features, 3, np.random.default_rng(seed))
        assert sorted(p // 30 for p in picks) == [0, 1, 2], (seed, picks)
        if picks[0] < 60:
            assert picks[1] >= 60  # the farthest point from any near-origin centre is an outlier


def test_k_center_is_seeded_and_skips_duplicates():
    features = np.array([[0.0], [0.0], [0.0], [1.0]])
    first = k_center_greedy(features, 3, np.random.default_rng(7))
    assert np.array_equal(first, k_center_greedy(features, 3, np.random.default_rng(7)))
    assert len(set(first)) == 3  # a centre's duplicates are 0 away, like the centre: never re-picked
    picks = {tuple(select(np.arange(50.0)[:, None], 1, "kcenter", seed, 0)) for seed in range(10)}
    assert len(picks) > 1  # the first centre depends on the seed


def test_select_rejects_unknown_methods_and_too_many_picks():
    with pytest.raises(ValueError, match="unknown selection method"):
        select(np.zeros((3, 2)), 1, "mystery", 0, 0)
    with pytest.raises(ValueError, match="cannot choose 4 of 3"):
        herding(np.zeros((3, 2)), 4)


def _manifest_and_features(tmp_path):
    """3 classes x 6 train images and 2 test images each; feature = a known 2-d point."""
    rows, features = [], []
    for label in range(3):
        for i in range(8):
            split = "test" if i >= 6 else "train"
            image_id = f"c{label}-{i}"
            rows.append({"image_id": image_id, "label": label, "class_name": str(label), "split": split, "source": str(len(rows))})
            if split == "train":
                # one far point per class (i == 5), the others near the origin; the mean's nearest is i == 0
                point = [50.0, 50.0] if i == 5 else [0.1 * i, 0.0]
                features.append({"image_id": image_id, "feature": np.array(point, dtype=np.float32)})
    manifest = tmp_path / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    feature_path = tmp_path / "features.parquet"
    pd.DataFrame(features).to_parquet(feature_path)
    return manifest, feature_path


@pytest.mark.parametrize("method", ["herding", "kcenter"])
def test_feature_subset_per_class_train_only_deterministic(tmp_path, method):
    manifest, features = _manifest_and_features(tmp_path)
    out = tmp_path / f"{method}.parquet"
    select_feature_subset(manifest_path=manifest, features_path=features, method=method, ipc=2, seed=0, out_path=out)
    subset = pd.read_parquet(out)
    assert subset.groupby("label").size().tolist() == [2, 2, 2]
    assert (subset.split == "train").all() and not subset.image_id.str.endswith(("-6", "-7")).any()
    assert (subset.method == method).all() and (subset.kind == "real").all()
    assert subset.selection_rank.tolist() == [0, 1] * 3
    assert "feature" not in subset.columns
    if method == "kcenter":  # two centres: the far point is always one of them
        assert subset.groupby("label").image_id.apply(lambda ids: ids.str.endswith("-5").any()).all()
    again = tmp_path / "again.parquet"
    select_feature_subset(manifest_path=manifest, features_path=features, method=method, ipc=2, seed=0, out_path=again)
    assert out.read_bytes() == again.read_bytes()


def test_herding_stage_picks_nearest_the_class_mean_first(tmp_path):
    manifest, features = _manifest_and_features(tmp_path)
    out = tmp_path / "herding.parquet"
    select_feature_subset(manifest_path=manifest, features_path=features, method="herding", ipc=1, seed=0, out_path=out)
    # class mean (8.5, 8.33): nearest of the near-origin points is the one farthest out, i == 4
    assert pd.read_parquet(out).image_id.tolist() == ["c0-4", "c1-4", "c2-4"]


def test_feature_subset_refuses_features_of_another_split(tmp_path):
    manifest, features = _manifest_and_features(tmp_path)
    pd.read_parquet(features).iloc[1:].to_parquet(features)
    with pytest.raises(Exception, match="does not score the train split"):
        select_feature_subset(manifest_path=manifest, features_path=features, method="herding", ipc=2, seed=0,
                              out_path=tmp_path / "x.parquet")


def test_comparisons_cover_ours_against_all_and_all_against_d4m():
    pairs = comparisons(["conf", "conf_sim", "d4m", "full", "herding", "random", "sim"])
    assert pairs[:5] == [("conf_sim", m) for m in ["conf", "d4m", "herding", "random", "sim"]]
    assert set(pairs[5:]) == {("conf", "d4m"), ("herding", "d4m"), ("random", "d4m"), ("sim", "d4m")}
    assert not any("full" in pair for pair in pairs)


def test_paired_differences_match_a_hand_computation():
    accuracy = {  # model m, seeds 0..2
        "d4m": [80.0, 82.0, 78.0],
        "conf_sim": [82.0, 83.0, 81.0],  # differences +2, +1, +3
        "random": [70.0, 90.0, 60.0],
    }
    table = pd.DataFrame(
        [{"model": "m", "method": method, "seed": seed, "test_accuracy_pct": acc}
         for method, values in accuracy.items() for seed, acc in enumerate(values)]
        + [{"model": "m", "method": "full", "seed": 0, "test_accuracy_pct": 99.0}]
    )
    paired = paired_differences(table).set_index(["method", "baseline"])
    ours = paired.loc[("conf_sim", "d4m")]
    # mean 2, sample sd 1, sem 1/sqrt(3), t_{0.975, 2} = 4.302653
    half_width = 4.302653 / math.sqrt(3)
    assert ours.seeds == 3 and ours.mean_diff == 2.0 and ours.std_diff == 1.0
    assert ours.ci_low == round(2 - half_width, 2) == -0.48 and ours.ci_high == round(2 + half_width, 2)
    assert ours.verdict == "not resolved"  # with 3 seeds even +1..+3 every time does not exclude 0
    assert ours.per_seed == "0:+2.00 1:+1.00 2:+3.00"
    assert paired.loc[("random", "d4m")].mean_diff == round((-10 + 8 - 18) / 3, 2)
    assert paired.loc[("conf_sim", "random")].per_seed == "0:+12.00 1:-7.00 2:+21.00"
    table.loc[table.method == "random", "test_accuracy_pct"] = [90.0, 72.0, 77.999]  # differences +10 -10 -0.001
    assert str(paired_differences(table).set_index(["method", "baseline"]).loc[("random", "d4m")].mean_diff) == "0.0"
    assert set(paired.index) == {("conf_sim", "d4m"), ("conf_sim", "random"), ("random", "d4m")}
    markdown = paired_markdown(paired.reset_index(), "m IPC 1")
    assert "| m " in markdown and "4.30 for 3 seeds" in markdown and "variance of building" in markdown


def test_t_interval_edge_cases():
    low, _ = t_interval(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0] * 3))
    assert low > 0  # many consistent positive differences exclude 0
    assert t_interval(np.array([2.0, 2.0, 2.0])) == (2.0, 2.0)
    assert all(math.isnan(v) for v in t_interval(np.array([1.0])))


def test_verdict_reads_the_interval_as_printed():
    """A bound within 0.005 of 0 prints as 0.00: the verdict must not call [0.00, 0.00] `higher`."""
    baseline = pd.Series([50.0, 51.0, 52.0])
    row = paired_row(baseline + 0.003, baseline)  # identical differences: the interval is the mean
    assert row["ci_low"] > 0 and round(row["ci_low"], 2) == 0.0 and row["verdict"] == "not resolved"
    assert paired_row(baseline + 0.006, baseline)["verdict"] == "higher"
