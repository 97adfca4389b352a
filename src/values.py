"""What kind of number a config or option value is: the checks behind every "is not allowed" message.

A bool is never a number here, although Python counts ``True`` as the integer 1: ``n_trials: true`` is a
mistake, not one trial.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_integer(value: Any) -> bool:
    """An integer (Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any, finite: bool = False) -> bool:
    """A real number (an integer or a float), not a bool; with ``finite``, neither nan nor infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and (not finite or math.isfinite(value))
