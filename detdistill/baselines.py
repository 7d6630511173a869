"""Real-data baselines: `ipc` real train images per class, one class each below, registered in
`BASELINES`.

- ``random``: a seeded random draw per class, from the labels alone (`stages.sets.select_random_subset`).

The others choose in the detector's penultimate feature space (the space refinement measures
similarity in):

- ``herding``: greedy moment matching (Welling 2009, as used for exemplars by iCaRL and DeepCore):
  step t takes the image that brings the mean of the t chosen features closest (Euclidean) to the
  class mean. The first pick is the image nearest the mean. Deterministic.
- ``kcenter``: greedy k-center, the coreset of Sener & Savarese (2018): from a seeded random first
  centre, repeatedly take the image farthest from its nearest chosen centre (Euclidean).

Both are hand-written: scikit-learn has neither, and the registry's implementations are a JAX
framework (coreax) or single-release packages; each is a dozen lines of numpy here.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .registry import Registry


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


class Baseline:
    """One real-data baseline: its `name` (an `evaluation.baselines` entry) and how it picks a
    class's images. Register a subclass with `@BASELINES.register`."""

    name: ClassVar[str]
    #: True: picks in the detector's feature space (`select`); False: from the labels alone
    needs_features: ClassVar[bool] = True

    def select(self, features: np.ndarray, k: int, seed: int, label: int) -> np.ndarray:
        """Positions of `k` rows of one class's `features`, in pick order."""
        raise ValueError(f"baseline {self.name!r} does not select in the feature space")


BASELINES: Registry[Baseline] = Registry("selection method", "evaluation.baselines")


@BASELINES.register
class RandomBaseline(Baseline):
    name = "random"
    needs_features = False


@BASELINES.register
class Herding(Baseline):
    name = "herding"

    def select(self, features, k, seed, label):
        return herding(features, k)


@BASELINES.register
class KCenter(Baseline):
    name = "kcenter"

    def select(self, features, k, seed, label):
        # keyed by (seed, label): a class's set does not depend on which other classes are configured
        return k_center_greedy(features, k, np.random.default_rng([seed, label]))


#: the baselines that choose in the detector's feature space
SELECTION_METHODS = tuple(name for name in BASELINES if BASELINES.get(name).needs_features)


def select(features: np.ndarray, k: int, method: str, seed: int, label: int) -> np.ndarray:
    """One class's picks by the baseline `method`."""
    return BASELINES.get(method).select(features, k, seed, label)
