"""Aggregate learning curves of several runs (seeds) into one curve with a bootstrap confidence band.

Runs of one group may be evaluated at different env steps and stop at different lengths (early
stopping, an interrupted run). The rule used here:

1. **Grid**: the union of the steps at which any run of the group logged the metric.
2. **Per run**: each run is linearly interpolated onto the grid *within its own range*
   ``[first step, last step]`` and undefined (NaN) outside it: no extrapolation, so a run that
   stopped early does not pretend to have continued, and one that started late is not back-filled.
3. **Per step**: the aggregate (mean, or IQM) is taken over the runs whose range covers that step;
   ``count`` says how many. Where runs drop out, the curve follows the remaining ones (it may jump).
4. **Band**: a 95 % percentile bootstrap over runs. Steps are grouped by which runs cover them; for
   each such set of ``k`` runs, ``n_boot`` resamples of ``k`` runs drawn with replacement (whole
   runs, the same resample for every step of the set) give ``n_boot`` aggregates per step, whose
   2.5 and 97.5 percentiles are the band. The RNG is seeded, so a plot is reproducible.

IQM (interquartile mean) is the mean of the middle 50 % of the values, with the two boundary values
weighted by the fraction of them inside the quartiles when the count is not a multiple of four
(3 runs: weights 1/6, 2/3, 1/6; 4 runs: the middle two; 1 or 2 runs: the mean). It is continuous in
the data and differs from the mean already at 3 seeds, unlike a trimmed mean that drops whole values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AGGREGATES = ("mean", "iqm")
_CHUNK = 4_000_000  # floats per bootstrap block (n_boot x runs x steps), about 32 MB


@dataclass
class Curve:
    """One group's aggregated curve; every array has shape (S,) over the grid ``steps``."""

    label: str
    n_runs: int              # runs in the group
    steps: np.ndarray        # env steps (int64), increasing: the union of the runs' logged steps
    value: np.ndarray        # the aggregate over the runs covering each step
    low: np.ndarray          # band: 2.5 percentile of the bootstrap aggregates
    high: np.ndarray         # band: 97.5 percentile
    count: np.ndarray        # runs covering each step (int64)


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


def _moments(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.moveaxis(values, axis, -1)
    return np.sort(x, axis=-1), np.sum(~np.isnan(x), axis=-1)  # sort puts NaN last


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean along ``axis``, ignoring NaN (see the module docstring for the weights).
    All-NaN slices give NaN."""
    x, n = _moments(np.asarray(values, dtype=float), axis)
    i = np.arange(x.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = i / n[..., None], (i + 1) / n[..., None]
        weight = np.clip(np.minimum(hi, 0.75) - np.maximum(lo, 0.25), 0.0, None) / 0.5
    weight = np.where(i < n[..., None], weight, 0.0)
    out = np.sum(weight * np.nan_to_num(x), axis=-1)
    return np.where(n > 0, out, np.nan)


def mean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean along ``axis``, ignoring NaN; all-NaN slices give NaN (without numpy's warning)."""
    x = np.asarray(values, dtype=float)
    n = np.sum(~np.isnan(x), axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, np.nansum(x, axis=axis) / n, np.nan)


def aggregate(matrix: np.ndarray, agg: str = "mean", axis: int = 0) -> np.ndarray:
    """``mean`` or ``iqm`` of ``matrix`` along ``axis`` (runs), NaN ignored."""
    if agg not in AGGREGATES:
        raise ValueError(f"unknown aggregate {agg!r}; one of {', '.join(AGGREGATES)}")
    return iqm(matrix, axis) if agg == "iqm" else mean(matrix, axis)


def bootstrap_band(matrix: np.ndarray, agg: str = "mean", n_boot: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap band over runs of ``matrix`` (R, S) -> ``(low (S,), high (S,))``.
    Each step resamples only the runs that cover it (rows not NaN there); see the module docstring."""
    rng = np.random.default_rng(seed)
    low, high = np.full(matrix.shape[1], np.nan), np.full(matrix.shape[1], np.nan)
    covered = ~np.isnan(matrix)
    patterns, which = np.unique(covered.T, axis=0, return_inverse=True)
    which = np.asarray(which).reshape(-1)
    q = [50 * (1 - confidence), 50 * (1 + confidence)]
    for p, pattern in enumerate(patterns):
        runs = np.flatnonzero(pattern)
        if not len(runs):
            continue
        cols = np.flatnonzero(which == p)
        draws = rng.integers(0, len(runs), size=(n_boot, len(runs)))
        width = max(1, _CHUNK // (n_boot * len(runs)))
        for start in range(0, len(cols), width):
            block = cols[start:start + width]
            sample = matrix[np.ix_(runs, block)][draws]            # (n_boot, k, columns)
            stats = aggregate(sample, agg, axis=1)                  # (n_boot, columns)
            low[block], high[block] = np.percentile(stats, q, axis=0)
    return low, high


def aggregate_runs(histories: Sequence[tuple[np.ndarray, np.ndarray]], label: str = "", agg: str = "mean",
                   n_boot: int = 2000, seed: int = 0, min_runs: int = 1) -> Curve:
    """The group's :class:`Curve` from its runs' ``(steps, values)`` histories (empty ones ignored);
    steps covered by fewer than ``min_runs`` runs are left out."""
    grid, matrix = to_grid(histories)
    value = aggregate(matrix, agg) if matrix.size else np.zeros(0)
    low, high = bootstrap_band(matrix, agg, n_boot, seed=seed) if matrix.size else (np.zeros(0), np.zeros(0))
    count = np.sum(~np.isnan(matrix), axis=0).astype(np.int64)
    keep = count >= min_runs
    return Curve(label, len(matrix), grid[keep], value[keep], low[keep], high[keep], count[keep])


__all__ = ["AGGREGATES", "Curve", "aggregate", "aggregate_runs", "bootstrap_band", "iqm", "mean", "to_grid"]
