"""How well one Cassie episode follows its speed command (docs/envs/cassie.md, "Walking on command").

Fed once per env step with the pelvis' world-x velocity and position and the command of that step
(:meth:`SpeedTracking.update`), it gives (:meth:`SpeedTracking.metrics`):

- ``forward_speed`` (m/s): mean world-x velocity of the episode so far;
- ``forward_distance`` (m): world-x displacement since the reset;
- ``recent_speed`` (m/s): mean world-x velocity over the last ``window`` seconds (all of the episode if shorter);
- ``speed_error`` (m/s): |``recent_speed`` − the command|;

and :meth:`SpeedTracking.on_command`: the episode has lasted at least ``duration`` seconds and its ``speed_error``
is at most ``tolerance``. At the last step of an episode truncated at 10 s, with the defaults (10 s, 5 s, 0.1 m/s),
that is "stayed up for the full 10 s and walked within 0.1 m/s of the command over the last 5 s"; the env reports
it as ``info["is_success"]``, so evaluation logs the share of such episodes as ``eval/success_rate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from hydrarl.errors import UserError
from hydrarl.values import is_number


@dataclass(frozen=True)
class CommandCheck:
    """When an episode counts as walking on command (the env's ``command_check`` kwarg)."""

    duration: float = 10.0   # s the episode must have lasted
    window: float = 5.0      # s at the episode's end over which the speed is averaged
    tolerance: float = 0.1   # m/s allowed between that speed and the command

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, float] | None) -> CommandCheck:
        """From a dict with some of the keys ``duration``, ``window``, ``tolerance`` (numbers > 0); UserError otherwise."""
        names = [f.name for f in fields(cls)]
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise UserError(f"command_check={kwargs!r} is not allowed: a dict with keys {', '.join(names)}.")
        for key, value in (kwargs or {}).items():
            if key not in names:
                raise UserError(f"command_check key {key!r} is not allowed: {', '.join(names)}.")
            if not (is_number(value, finite=True) and value > 0):
                raise UserError(f"command_check.{key}={value!r} is not allowed: a number > 0 (s or m/s).")
        return cls(**{key: float(value) for key, value in (kwargs or {}).items()})


class SpeedTracking:
    """Forward speed of one episode against its command; ``dt`` is the env step in seconds."""

    def __init__(self, dt: float, check: CommandCheck) -> None:
        self.check = check
        self.duration_steps = int(round(check.duration / dt))
        self.recent = np.zeros(max(1, int(round(check.window / dt))))  # ring of the last window's velocities (m/s)
        self.reset(0.0)

    def reset(self, x: float) -> None:
        """A new episode whose pelvis starts at world x (m)."""
        self.steps, self.speed_sum, self.start_x, self.x, self.command = 0, 0.0, x, x, 0.0
        self.recent[:] = 0.0

    def update(self, vx: float, x: float, command: float) -> None:
        """One env step: the pelvis' world-x velocity (m/s) and position (m) after it, and the step's command (m/s)."""
        self.recent[self.steps % self.recent.size] = vx
        self.steps += 1
        self.speed_sum += vx
        self.x, self.command = x, command

    def metrics(self) -> dict[str, float]:
        """The four numbers of the module doc, for the episode so far (zeros before the first step)."""
        n = min(self.steps, self.recent.size)
        recent = float(self.recent[:n].mean()) if n else 0.0
        return {"forward_speed": self.speed_sum / self.steps if self.steps else 0.0,
                "forward_distance": self.x - self.start_x,
                "recent_speed": recent,
                "speed_error": abs(recent - self.command) if n else 0.0}

    def on_command(self) -> bool:
        """Whether the episode so far has lasted ``duration`` and its ``speed_error`` is within ``tolerance``."""
        return self.steps >= self.duration_steps and self.metrics()["speed_error"] <= self.check.tolerance + 1e-12
