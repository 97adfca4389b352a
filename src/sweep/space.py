"""Search spaces written in Hydra's override grammar, turned into Optuna distributions.

``interval(a, b)`` -> float in [a, b]; ``int(interval(a, b))`` -> int; ``tag(log, interval(a, b))``
-> log scale; ``range(a, b[, step])`` -> int (or float) steps, ``b`` excluded as in Python;
``choice(x, y, ...)`` or ``x,y,...`` -> categorical. A plain value is fixed for every trial.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hydrarl.errors import UserError


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    key, text = override.get_key_element(), override.input_line.split("=", 1)[1]
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([v if isinstance(v, (int, float, str, bool)) or v is None else compact(v) for v in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if not step > 0 or not start < stop:  # Python's range: stop excluded, so start < stop for one value
            raise UserError(f"search space: {key}={text} is empty or inverted; write range(low, high[, step]) "
                            "with low < high and step > 0.")
        if log and start <= 0:
            raise UserError(f"search space: {key}={text} is on a log scale, so its low end must be > 0.")
        n = math.ceil((stop - start) / step)
        if all(isinstance(x, int) for x in (start, stop, step)):
            return IntDistribution(start, start + (n - 1) * step, step=step, log=log and step == 1)
        return FloatDistribution(float(start), float(start + (n - 1) * step), step=float(step))
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if not low < high:
            raise UserError(f"search space: {key}={text} is empty or inverted; write interval(low, high) with low < high.")
        if log and low <= 0:
            raise UserError(f"search space: {key}={text} is on a log scale, so its low end must be > 0.")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise UserError(f"search space: {key}={text} is not a choice, range or interval.")


def compact(value: Any) -> str:
    """A list or dict as one override token without spaces: ``[64,64]``, ``{a:1}``-style JSON."""
    return json.dumps(value, separators=(",", ":"))


def parse_space(params: dict[str, Any]) -> tuple[dict[str, BaseDistribution], dict[str, Any]]:
    """Split ``{key: expression}`` into Optuna distributions (sweeps) and fixed values."""
    parser = OverridesParser.create()
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for key, expression in (params or {}).items():
        line = f"{key}={expression}"
        try:
            (override,) = parser.parse_overrides([line])
        except Exception as exc:  # noqa: BLE001 - Hydra's grammar errors (several lines: keep the reason's)
            reason = [text for text in str(exc).splitlines() if text.strip() and not text.startswith("See https")]
            raise UserError(f"search space: cannot parse '{line}': {reason[-1] if reason else exc!r}") from exc
        if override.is_sweep_override():
            distributions[key] = _distribution(override)
        else:
            fixed[key] = override.value()
    return distributions, fixed


def edge_values(distribution: BaseDistribution) -> list[Any]:
    """The values of ``distribution`` that bound what it can produce: every choice of a categorical one, both
    ends of a range or interval (a trial's value lies between them). What a check of the search space composes
    and validates: if these pass the config's value checks, so does every value a trial can get."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return list(dict.fromkeys([distribution.low, distribution.high]))


def probe_values(distributions: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Configurations that together take every :func:`edge_values` value of each key: the first takes each
    key's first value (a choice's first, a range's low end), the next ones the next values (a key with fewer
    starts again from its first). As many as the most values a key has."""
    edges = {key: edge_values(dist) for key, dist in distributions.items()}
    rounds = max((len(values) for values in edges.values()), default=1)
    return [{key: values[r % len(values)] for key, values in edges.items()} for r in range(rounds)]


def override_value(value: Any) -> str:
    """A sampled value written back as a Hydra override value."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    return str(value)


def grid_space(distributions: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The search space as GridSampler wants it; only choices and ranges can form a grid."""
    grid: dict[str, list[Any]] = {}
    for key, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step:
            n = int(round((dist.high - dist.low) / dist.step)) + 1
            grid[key] = [dist.low + i * dist.step for i in range(n)]
        else:
            raise UserError(f"sampler=grid needs choice(...) or range(...) for every parameter; {key} is an interval.")
    return grid
