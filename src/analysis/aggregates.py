"""Aggregates of scores across runs (seeds) with rliable, the field's standard for reporting RL results.

- :func:`aggregate`: the mean or the IQM (interquartile mean: the 25 % trimmed mean, rliable's
  ``aggregate_iqm``, with 3 runs the plain mean, with 4 the mean of the middle two) along an axis.
- :func:`interval_estimates`: the aggregate of each column of a (runs, columns) matrix with a percentile
  confidence interval from rliable's stratified bootstrap over runs (each column is a stratum: the runs are
  resampled per column). Curves use it per step (:mod:`hydrarl.analysis.curves`).
- :func:`score_summary`, :func:`improvement_probabilities`, :func:`performance_profiles`: final scores of
  groups of runs (one score per run): IQM and mean with their intervals; P(X > Y), the probability
  that a run of group X scores higher than a run of group Y (ties count one half; every pair up to 4 groups,
  beyond that the best group against each other); the fraction of runs
  scoring above τ, with a band.

rliable draws its resamples from numpy's global random state: every call here seeds it (``seed``) and puts
the caller's state back, so results are reproducible and nothing else's randomness is disturbed. rliable and
scipy are imported on first use (about 1.5 s).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

AGGREGATES = ("mean", "iqm")
SUMMARY = ("iqm", "mean")


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _column_function(agg: str) -> Callable[[np.ndarray], np.ndarray]:
    """(runs, columns) without NaN -> (columns,): the aggregate of each column."""
    if agg not in AGGREGATES:
        raise ValueError(f"unknown aggregate {agg!r}; one of {', '.join(AGGREGATES)}")
    if agg == "mean":
        return lambda x: np.mean(x, axis=0)
    from scipy.stats import trim_mean

    return lambda x: trim_mean(x, proportiontocut=0.25, axis=0)  # rliable's aggregate_iqm, per column


def aggregate(values: np.ndarray, agg: str = "mean", axis: int = 0) -> np.ndarray:
    """``mean`` or ``iqm`` of ``values`` (no NaN) along ``axis``."""
    return _column_function(agg)(np.moveaxis(np.asarray(values, dtype=float), axis, 0))


def interval_estimates(matrix: np.ndarray, agg: str = "mean", reps: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``matrix`` (R runs, C columns), no NaN -> the aggregate of each column and its interval: ``(value, low,
    high)``, each (C,). rliable's ``get_interval_estimates`` (stratified bootstrap, percentile method)."""
    from rliable import library as rly

    matrix = np.asarray(matrix, dtype=float)
    with _seeded(seed):
        point, interval = rly.get_interval_estimates({"x": matrix}, _column_function(agg), reps=reps,
                                                     confidence_interval_size=confidence)
    return np.asarray(point["x"], dtype=float), interval["x"][0], interval["x"][1]


@dataclass
class Estimate:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{_number(self.value)} [{_number(self.low)}, {_number(self.high)}]"


def _number(x: float) -> str:
    """3 significant digits, but whole numbers from 1000 up (-1287, not -1.29e+03)."""
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def score_summary(scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> dict[str, dict[str, Estimate]]:
    """Group -> ``{"iqm", "mean"}`` -> :class:`Estimate` of its runs' final ``scores`` (one per run). (rliable's
    median is the median over tasks of each task's mean: with one task, the mean; so it is left out.)"""
    from rliable import library as rly
    from rliable import metrics

    def func(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    with _seeded(seed):
        point, interval = rly.get_interval_estimates({k: np.asarray(v, float).reshape(-1, 1) for k, v in scores.items()},
                                                     func, reps=reps)
    return {k: {name: Estimate(float(point[k][i]), float(interval[k][0][i]), float(interval[k][1][i]))
                for i, name in enumerate(SUMMARY)} for k in scores}


def improvement_probabilities(scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0,
                              all_pairs_up_to: int = 4) -> list[tuple[str, str, Estimate]]:
    """P(X > Y) with rliable's interval (runs of each group resampled independently): for every pair of groups
    (X before Y in ``scores``) when there are at most ``all_pairs_up_to`` groups, else for the group of the highest
    IQM against each other one (rliable's bootstrap costs about a millisecond per resample and pair)."""
    from rliable import library as rly
    from rliable import metrics

    labels = list(scores)
    if len(labels) <= all_pairs_up_to:
        pairs = [(x, y) for i, x in enumerate(labels) for y in labels[i + 1:]]
    else:
        best = max(labels, key=lambda label: float(metrics.aggregate_iqm(np.asarray(scores[label], float))))
        pairs = [(best, y) for y in labels if y != best]
    if not pairs:
        return []
    data = {f"{x}|{y}": [np.asarray(scores[x], float).reshape(-1, 1), np.asarray(scores[y], float).reshape(-1, 1)]
            for x, y in pairs}
    with _seeded(seed):
        point, interval = rly.get_interval_estimates(data, metrics.probability_of_improvement, reps=reps)
    return [(x, y, Estimate(float(point[f"{x}|{y}"]), float(interval[f"{x}|{y}"][0][0]),
                            float(interval[f"{x}|{y}"][1][0]))) for x, y in pairs]


def performance_profiles(scores: dict[str, np.ndarray], taus: np.ndarray, reps: int = 2000,
                         seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Group -> the fraction of its runs scoring above each τ in ``taus`` (T,), and its (2, T) band."""
    from rliable import library as rly

    with _seeded(seed):
        return rly.create_performance_profile({k: np.asarray(v, float).reshape(-1, 1) for k, v in scores.items()},
                                              taus, reps=reps)


__all__ = ["AGGREGATES", "SUMMARY", "Estimate", "aggregate", "improvement_probabilities", "interval_estimates",
           "performance_profiles", "score_summary"]
