"""Aggregate learning curves of several runs (seeds) into one curve with a bootstrap confidence band.

Runs of one group may be evaluated at different env steps and stop at different lengths (early
stopping, an interrupted run). The rule used here:

1. **Grid**: the union of the steps at which any run of the group logged the metric.
2. **Per run**: each run is linearly interpolated onto the grid *within its own range*
   ``[first step, last step]`` and undefined (NaN) outside it: no extrapolation, so a run that
   stopped early does not pretend to have continued, and one that started late is not back-filled.
3. **Per step**: the aggregate (mean, or IQM) is taken over the runs whose range covers that step;
   ``count`` says how many. Where runs drop out, the curve follows the remaining ones (it may jump).
4. **Band**: steps are grouped by which runs cover them; for each such set of runs, rliable's stratified
   bootstrap (:func:`hydrarl.analysis.aggregates.interval_estimates`) gives each step's aggregate and its 95 %
   percentile interval. The resamples are seeded, so a plot is reproducible.

Steps 1-3 are ours on purpose: rliable wants a full (runs x steps) matrix, which runs of unequal length (early
stopping, an interrupted run) do not give; padding them would invent data. Where all runs cover a step, the
value and band there are exactly rliable's. IQM is rliable's (the 25 % trimmed mean; see ``aggregates``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hydrarl.analysis.aggregates import AGGREGATES, interval_estimates


@dataclass
class Curve:
    """One group's aggregated curve; every array has shape (S,) over the grid ``steps``."""

    label: str
    n_runs: int              # runs in the group
    steps: np.ndarray        # env steps (int64), increasing: the union of the runs' logged steps
    value: np.ndarray        # the aggregate over the runs covering each step
    low: np.ndarray          # band: 2.5 percentile of the bootstrap aggregates (rliable)
    high: np.ndarray         # band: 97.5 percentile
    count: np.ndarray        # runs covering each step (int64)
    finals: np.ndarray       # (n_runs,): each run's last logged value, its final score


def to_grid(histories: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Runs' ``(steps, values)`` (each increasing steps) -> ``(grid (S,), matrix (R, S))``; the matrix
    holds each run linearly interpolated within its own step range and NaN outside it."""
    histories = [(np.asarray(s), np.asarray(v, dtype=float)) for s, v in histories if len(s)]
    if not histories:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
    grid = np.unique(np.concatenate([s for s, _ in histories])).astype(np.int64)
    matrix = np.full((len(histories), len(grid)), np.nan)
    for row, (steps, values) in zip(matrix, histories, strict=True):
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        row[inside] = np.interp(grid[inside], steps, values)
    return grid, matrix


def bootstrap_band(matrix: np.ndarray, agg: str = "mean", n_boot: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``matrix`` (R, S) with NaN where a run does not cover a step -> ``(value (S,), low (S,), high (S,))``:
    per set of covering runs, rliable's aggregate and interval (see the module docstring)."""
    value, low, high = (np.full(matrix.shape[1], np.nan) for _ in range(3))
    covered = ~np.isnan(matrix)
    patterns, which = np.unique(covered.T, axis=0, return_inverse=True)
    which = np.asarray(which).reshape(-1)
    for p, pattern in enumerate(patterns):
        runs, cols = np.flatnonzero(pattern), np.flatnonzero(which == p)
        if len(runs):
            value[cols], low[cols], high[cols] = interval_estimates(matrix[np.ix_(runs, cols)], agg, n_boot,
                                                                    confidence, seed)
    return value, low, high


def aggregate_runs(histories: Sequence[tuple[np.ndarray, np.ndarray]], label: str = "", agg: str = "mean",
                   n_boot: int = 2000, seed: int = 0, min_runs: int = 1) -> Curve:
    """The group's :class:`Curve` from its runs' ``(steps, values)`` histories (empty ones ignored);
    steps covered by fewer than ``min_runs`` runs are left out."""
    grid, matrix = to_grid(histories)
    value, low, high = bootstrap_band(matrix, agg, n_boot, seed=seed) if matrix.size else (np.zeros(0),) * 3
    count = np.sum(~np.isnan(matrix), axis=0).astype(np.int64)
    keep = count >= min_runs
    finals = np.array([values[-1] for _, values in histories if len(values)], dtype=float)
    return Curve(label, len(matrix), grid[keep], value[keep], low[keep], high[keep], count[keep], finals)


__all__ = ["AGGREGATES", "Curve", "aggregate_runs", "bootstrap_band", "to_grid"]
