"""Real-data baselines: `ipc` real train images per class, chosen in the detector's penultimate
feature space (the space refinement measures similarity in).

- ``herding``: greedy moment matching (Welling 2009, as used for exemplars by iCaRL and DeepCore):
  step t takes the image that brings the mean of the t chosen features closest (Euclidean) to the
  class mean. The first pick is the image nearest the mean. Deterministic.
- ``kcenter``: greedy k-center, the coreset of Sener & Savarese (2018): from a seeded random first
  centre, repeatedly take the image farthest from its nearest chosen centre (Euclidean).

Both are hand-written: scikit-learn has neither, and the registry's implementations are a JAX
framework (coreax) or single-release packages; each is a dozen lines of numpy here.
"""

from __future__ import annotations

import numpy as np

SELECTION_METHODS = ("herding", "kcenter")


def _distances(features: np.ndarray, point: np.ndarray) -> np.ndarray:
    return np.linalg.norm(features - point, axis=1)


def herding(features: np.ndarray, k: int) -> np.ndarray:
    """Positions of `k` rows of `features` in pick order (ties: the lower position)."""
    features = np.asarray(features, dtype=np.float64)
    _check_k(features, k)
    target_mean = features.mean(axis=0)
    chosen: list[int] = []
    chosen_sum = np.zeros(features.shape[1])
    for step in range(1, k + 1):
        # the mean of chosen + x is closest to the target where x is closest to step*mean - sum
        distances = _distances(features, step * target_mean - chosen_sum)
        distances[chosen] = np.inf
        pick = int(np.argmin(distances))
        chosen.append(pick)
        chosen_sum += features[pick]
    return np.array(chosen, dtype=np.int64)


def k_center_greedy(features: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of `k` rows of `features` in pick order; the first centre is drawn from `rng`
    (ties later: the lower position)."""
    features = np.asarray(features, dtype=np.float64)
    _check_k(features, k)
    chosen = [int(rng.integers(len(features)))]
    nearest_centre = _distances(features, features[chosen[0]])
    for _ in range(k - 1):
        nearest_centre[chosen] = -np.inf  # duplicates of a centre are at distance 0, never below it
        pick = int(np.argmax(nearest_centre))
        chosen.append(pick)
        nearest_centre = np.minimum(nearest_centre, _distances(features, features[pick]))
    return np.array(chosen, dtype=np.int64)


def _check_k(features: np.ndarray, k: int) -> None:
    if not 1 <= k <= len(features):
        raise ValueError(f"cannot choose {k} of {len(features)} images")


def select(features: np.ndarray, k: int, method: str, seed: int, label: int) -> np.ndarray:
    """One class's picks. k-center's generator is keyed by (seed, label): a class's set does not
    depend on which other classes are configured."""
    if method == "herding":
        return herding(features, k)
    if method == "kcenter":
        return k_center_greedy(features, k, np.random.default_rng([seed, label]))
    raise ValueError(f"unknown selection method {method!r}; expected one of {SELECTION_METHODS}")
