"""``CommandChanges``: the speed command of a Cassie training episode changes every few seconds.

``CassieEnv`` draws one command per episode. A policy trained that way can settle on one pace and read the
command weakly (docs/benchmarks_cassie.md, MirrorPPO stage 4: 0.44-0.55 m/s for commands 0.2-0.8). With this wrapper
the command is drawn again after each hold time, so speeding up and slowing down on command is part of every
episode. It is meant for training copies (``only: train`` in ``env.wrappers``): the evaluation env keeps one
command per episode, as the walking-on-command check assumes.

The new command takes effect at the start of a step: that step's reward and the observation it returns use it,
the action was chosen under the old one (one step in ``hold`` seconds). Hold times and commands come from the
env's seeded ``np_random``, so a seeded episode is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from hydrarl.errors import UserError
from hydrarl.values import is_number


class CommandChanges(gym.Wrapper):
    """Draws a new speed command after each hold time, uniform in ``hold`` seconds.

    :param env: a ``CassieEnv`` (possibly wrapped; its ``speed_command``, ``speeds`` and ``dt`` are used)
    :param hold: [shortest, longest] seconds a command is held (> 0); one number holds that long every time
    :param speeds: the commands drawn (m/s); None: the env's own ``speeds``
    """

    def __init__(self, env: gym.Env, hold: float | Sequence[float] = (2.0, 5.0), speeds: Sequence[float] | None = None):
        super().__init__(env)
        cassie = env.unwrapped
        if not all(hasattr(cassie, name) for name in ("speed_command", "speeds", "dt")):
            raise UserError(f"CommandChanges: the env {type(cassie).__name__} has no speed command; it wraps Cassie only.")
        bounds = [hold, hold] if is_number(hold) else list(hold) if isinstance(hold, Sequence) else []
        if not (len(bounds) == 2 and all(is_number(b, finite=True) for b in bounds) and 0 < bounds[0] <= bounds[1]):
            raise UserError(f"CommandChanges: hold={hold!r} is not allowed: seconds > 0, one number or [shortest, longest].")
        if speeds is not None and not (isinstance(speeds, Sequence) and len(speeds) > 0
                                       and all(is_number(s, finite=True) for s in speeds)):
            raise UserError(f"CommandChanges: speeds={speeds!r} is not allowed: a non-empty list of speeds in m/s, or null.")
        self.hold_steps = (bounds[0] / cassie.dt, bounds[1] / cassie.dt)  # env steps
        self.speeds = np.asarray(cassie.speeds if speeds is None else speeds, dtype=float)
        self._steps_left = 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._steps_left = self._draw_hold()
        return obs, info

    def step(self, action):
        self._steps_left -= 1
        if self._steps_left <= 0:
            self.env.unwrapped.speed_command = float(self.np_random.choice(self.speeds))
            self._steps_left = self._draw_hold()
        return self.env.step(action)

    def _draw_hold(self) -> int:
        """Env steps until the next change (at least 1)."""
        return max(1, round(self.np_random.uniform(*self.hold_steps)))
