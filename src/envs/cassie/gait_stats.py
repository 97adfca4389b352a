"""Left/right gait statistics of one Cassie episode and their symmetry indices (docs/envs/cassie.md, "Gait symmetry").

Fed once per env step with each foot's vertical ground force, lowest point above the floor and world-x position
(:meth:`GaitStats.update`), it splits each foot's time into stance (force above ``CONTACT_N``) and swing, and gives
per foot (:meth:`GaitStats.metrics`):

- ``steps_<foot>``: touchdowns (contact after at least one step off the ground);
- ``swing_height_<foot>`` (m): mean over its completed swings of the highest the foot rose; 0 if it never swung;
- ``stance_time_<foot>`` (s): mean length of its complete stance phases (from a touchdown to a lift-off); a foot
  with none has the mean of its stances cut by the episode's start or end (one that never lifts stands for the
  whole episode);
- ``step_length_<foot>`` (m): mean, over its touchdowns, of how far it lands ahead of the other foot; 0 if none;

and the symmetry index of each pair, ``symmetry_<name>`` = 100 · |L − R| / (½ (|L| + |R|)) in % (Robinson et al.
1987): 0 for a symmetric gait, 200 when one side is 0 and the other not (a foot that drags or never steps).
"""

from __future__ import annotations

import numpy as np

CONTACT_N = 20.0  # N of vertical ground force above which a foot is in stance (~6 % of the robot's weight)
FEET = ("left", "right")


def symmetry_index(left: float, right: float) -> float:
    """100 · |L − R| / (½ (|L| + |R|)), in %; 0 when both are 0."""
    scale = 0.5 * (abs(left) + abs(right))
    return 0.0 if scale == 0 else 100.0 * abs(left - right) / scale


class GaitStats:
    """Stance and swing bookkeeping of both feet over one episode; ``dt`` is the env step in seconds."""

    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.reset()

    def reset(self) -> None:
        self.in_contact: np.ndarray | None = None  # (2,) bool, the last step's
        self.stance_steps = np.zeros(2, dtype=int)  # steps of the current stance
        self.landed = np.zeros(2, dtype=bool)  # whether the current stance began with a touchdown in the episode
        self.swing_peak = np.full(2, np.nan)  # highest point of the current swing (nan: not in a swing)
        self.stances: list[list[int]] = [[], []]  # complete stance lengths (steps) per foot
        self.cut: list[list[int]] = [[], []]  # stance lengths cut by the episode's start
        self.swings: list[list[float]] = [[], []]  # finished swing peak heights (m) per foot
        self.landings: list[list[float]] = [[], []]  # x of the landing foot minus the other foot's (m)

    def update(self, force: np.ndarray, height: np.ndarray, x: np.ndarray) -> None:
        """One env step: per foot (left, right) the vertical force (N), lowest height (m) and world x (m)."""
        contact = np.asarray(force) > CONTACT_N
        for foot in range(2):
            was = None if self.in_contact is None else bool(self.in_contact[foot])
            if contact[foot]:
                if was is False:  # touchdown: the swing is over
                    self.swings[foot].append(float(self.swing_peak[foot]))
                    self.landings[foot].append(float(x[foot] - x[1 - foot]))
                    self.swing_peak[foot], self.landed[foot] = np.nan, True
                self.stance_steps[foot] += 1
            else:
                if was:  # lift-off: the stance is over
                    (self.stances if self.landed[foot] else self.cut)[foot].append(int(self.stance_steps[foot]))
                    self.stance_steps[foot] = 0
                self.swing_peak[foot] = np.fmax(self.swing_peak[foot], float(height[foot]))
        self.in_contact = contact

    def metrics(self) -> dict[str, float]:
        """The per-foot values and symmetry indices of the module doc, for the episode so far."""
        out: dict[str, float] = {}
        for foot, name in enumerate(FEET):
            stances = self.stances[foot] or self.cut[foot] + ([int(self.stance_steps[foot])] if self.stance_steps[foot] else [])
            out[f"steps_{name}"] = float(len(self.landings[foot]))
            out[f"swing_height_{name}"] = float(np.mean(self.swings[foot])) if self.swings[foot] else 0.0
            out[f"stance_time_{name}"] = float(np.mean(stances)) * self.dt if stances else 0.0
            out[f"step_length_{name}"] = float(np.mean(self.landings[foot])) if self.landings[foot] else 0.0
        for key in ("swing_height", "stance_time", "step_length"):
            out[f"symmetry_{key}"] = symmetry_index(out[f"{key}_left"], out[f"{key}_right"])
        return out
