"""The selection rule on hand-made inputs whose answers were worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from detdistill.refine import cosine_sums, refine_set, select_candidate

# Five candidates for a defective image of class 0, beta 0.9, k 2.
#   idx  p     pred  feature   cos-sum to normal {[1,0]}
#   0    0.95  0     [0, 1]    0
#   1    0.97  0     [1, 0]    1
#   2    0.50  2     [-1, 0]   -1
#   3    0.85  0     [1, 1]    0.707  (below beta)
#   4    0.92  0     [0, 2]    0      (passes beta but is third by p: outside the top-2)
P = np.array([0.95, 0.97, 0.50, 0.85, 0.92])
PRED = np.array([0, 0, 2, 0, 0])
FEATS = np.array([[0, 1], [1, 0], [-1, 0], [1, 1], [0, 2]], dtype=float)
NORMAL = np.array([[1.0, 0.0]])


def choose(method, p=P, pred=PRED, feats=FEATS, normal=NORMAL, beta=0.9, top_k=2):
    return select_candidate(p, pred, feats, 0, normal, method=method, beta=beta, top_k=top_k)


def test_cosine_sums():
    sums = cosine_sums(FEATS, np.array([[1.0, 0.0], [0.0, 3.0]]))
    np.testing.assert_allclose(sums, [1, 1, -1, np.sqrt(2), 1])
    assert cosine_sums(FEATS, np.empty((0, 2))).tolist() == [0] * 5


def test_conf_sim_pool_is_top_k_of_beta_filtered_then_least_similar():
    choice = choose("conf_sim")
    assert choice.pool == (1, 0)  # 4 also passes beta but is third by p
    assert choice.index == 0 and not choice.fallback
    assert choice.sim_sum == pytest.approx(0.0)


def test_top_k_widens_pool():
    choice = choose("conf_sim", top_k=3)
    assert choice.pool == (1, 0, 4)
    # 0 and 4 tie at cos-sum 0; the tie goes to the higher p (0.95 > 0.92)
    assert choice.index == 0


def test_beta_filter_excludes_low_confidence_and_mismatches():
    choice = choose("conf_sim", beta=0.96)
    assert choice.pool == (1,) and choice.index == 1
    # a candidate predicted as another class is never valid, whatever its target p
    choice = choose("conf_sim", p=np.array([0.40, 0.35, 0.32]), pred=np.array([1, 0, 0]),
                    feats=FEATS[:3], beta=0.3, top_k=2)
    assert choice.pool == (1, 2) and choice.index == 2  # cos-sums 1 and -1


def test_fallback_is_single_argmax_p_candidate():
    choice = choose("conf_sim", beta=0.99)
    assert choice.fallback and choice.pool == (1,) and choice.index == 1


def test_ablations():
    assert choose("conf").index == 1  # top-1 p
    assert choose("sim").index == 2  # least similar among all, p ignored


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown refinement method"):
        choose("best")


def _frames():
    # class 0: A (prototype 0) and B (prototype 1) defective, N (prototype 2) normal, rows shuffled
    initial = pd.DataFrame(
        {
            "image_id": ["N", "B", "A"],
            "label": [0, 0, 0],
            "prototype_id": [2, 1, 0],
            "image_path": ["n.png", "b.png", "a.png"],
            "predicted": [0, 3, 0],
            "p_target": [0.99, 0.10, 0.60],
            "feature": [np.array([1.0, 0.0])] * 3,
            "defective": [False, True, True],
        }
    )
    s = 1 / np.sqrt(2)
    candidates = pd.DataFrame(
        {
            "source_image_id": ["A", "A", "B", "B"],
            "candidate_index": [0, 1, 0, 1],
            "image_path": ["a0.png", "a1.png", "b0.png", "b1.png"],
            "seed": [10, 11, 20, 21],
            "predicted": [0, 0, 0, 0],
            "p_target": [0.95, 0.96, 0.95, 0.94],
            "feature": [np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([s, -s])],
        }
    )
    return initial, candidates


def test_normal_set_grows_in_prototype_order():
    initial, candidates = _frames()
    out = refine_set(initial, candidates, method="conf_sim", beta=0.9, top_k=2)
    assert out.prototype_id.tolist() == [0, 1, 2]
    # A first: normal {[1,0]} -> a0 (cos 0) beats a1 (cos 1); a0 joins the normal set.
    # B next: normal {[1,0],[0,1]} -> b0 sums to 1, b1 to 0 -> b1. Without the update b0 (0 < 0.707) would win.
    assert out.image_path.tolist() == ["a0.png", "b1.png", "n.png"]
    assert out.replaced_image_id.tolist()[:2] == ["A", "B"]
    assert out.origin.tolist() == ["candidate", "candidate", "initial"]
    assert out.sim_sum.iloc[1] == pytest.approx(0.0, abs=1e-12)


def test_d4m_keeps_initial_set():
    initial, candidates = _frames()
    out = refine_set(initial, candidates, method="d4m", beta=0.9, top_k=2)
    assert out.image_path.tolist() == ["a.png", "b.png", "n.png"]
    assert (out.origin == "initial").all()
