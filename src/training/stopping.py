"""The early-stop rule, the one definition the Trainer and the regression matrix share: a run has met
its goal once the mean of the last ``last_n`` values of a metric is >= ``threshold``.

Values are a metric's per-epoch evaluations in epoch order; steps are env steps at the end of each
epoch (``time/total_timesteps``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


def last_values(history: Iterable[dict[str, float]], metric: str, last_n: int) -> list[float]:
    """The last ``last_n`` recorded values of ``metric`` in a per-epoch history (fewer early in a run)."""
    return [h[metric] for h in history if metric in h][-last_n:]


def window_mean(values: Sequence[float], last_n: int) -> float | None:
    """The mean of the last ``last_n`` values; None while there are fewer."""
    if len(values) < last_n:
        return None
    return float(np.mean(values[-last_n:]))


def rule_met(values: Sequence[float], last_n: int, threshold: float | None) -> bool:
    """True when the mean of the last ``last_n`` values is >= ``threshold`` (never with threshold None)."""
    mean = window_mean(values, last_n) if threshold is not None else None
    return mean is not None and mean >= threshold


@dataclass(frozen=True)
class Progress:
    """How a run did against the rule over its whole history.

    best_mean: the best mean of ``last_n`` consecutive values (None with fewer than ``last_n`` values).
    met_at_step: env steps at the end of the first epoch where the rule held (None: never, or no threshold).
    """

    best_mean: float | None = None
    met_at_step: int | None = None


def progress(points: Iterable[tuple[int | None, float]], last_n: int, threshold: float | None) -> Progress:
    """Apply the rule epoch by epoch to ``points`` = (env steps or None, value) in epoch order."""
    values: list[float] = []
    best, met_at = None, None
    for steps, value in points:
        values.append(value)
        mean = window_mean(values, last_n)
        if mean is None:
            continue
        if not math.isnan(mean) and (best is None or mean > best):
            best = mean
        if met_at is None and rule_met(values, last_n, threshold):
            met_at = steps
    return Progress(best, met_at)


def history_points(history: Iterable[dict[str, float]], metric: str) -> list[tuple[int | None, float]]:
    """(env steps, value of ``metric``) of each epoch of a per-epoch history that recorded ``metric``."""
    return [(int(h.get("time/total_timesteps", 0)) or None, h[metric]) for h in history if metric in h]
