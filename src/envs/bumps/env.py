"""The bumps tactile POMDPs (see docs/envs/bumps.md): find two bumps with a compliant finger, push the right one.

:class:`BumpsEnv` (``Bumps-v0``, ``BumpsPunish-v0``, ``BumpsTest-v0``) and :class:`BumpTargetEnv`
(``BumpTarget-v0``); the world is :class:`hydrarl.envs.bumps.scene.BumpsScene`, one pybullet client
per env. Lengths in metres, angles in radians.

One action (``[step_ratio, stiffness_ratio]`` in [-1, 1]², or Discrete(4) with ``discrete=True``):
the finger's stiffness becomes ``0.007 + (stiffness_ratio + 1) / 2 · 0.04`` N·m (up to 0.057 for
the bump-target task), then the carrier moves by ``0.05 · step_ratio`` along y (stopping at ±0.38)
at 0.25 m/s, one 1/240 s substep per 1.04 mm, and rests 12 substeps (50 ms) so the finger settles:
up to 48 + 12 = 60 substeps per action (short steps take fewer). The speed trades margin for time:
crossing a bump with the softest finger displaces it by about 0.00015 m at 0.25 m/s, 0.0007 m at
0.5 m/s (close to the 0.001 m that counts as moved) and 0.00001 m at 0.1 m/s.

Episodes (50 steps by the registration) begin from a freshly built world: bumps placed by the
variant's rule, the finger lifted to 0.35 m above a start y that keeps 0.04 m clear of every bump
and lowered to working height (0.2 m). All randomness comes from ``self.np_random``, so a seed fixes
the layout and start.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hydrarl.envs.bumps.scene import FINGER_LIMIT, BumpsScene
from hydrarl.errors import UserError

Y_HALF_RANGE = 0.4       # m, observation bound of every y
Y_LIMIT = 0.38           # m, the finger stops here; reaching it ends a bumps episode
STEP_LENGTH = 0.05       # m, carrier move at step_ratio = ±1
STIFFNESS_MIN = 0.007    # N·m, finger stiffness at stiffness_ratio = -1
START_CLEARANCE = 0.04   # m, the finger starts at least this far from every bump centre
MOVED = 0.001            # m, a bump displaced by more than this has been moved
PUSHED = 0.01            # m, bump2 (or the target bump) pushed right by more than this: success
TARGET_REACHED = 0.05    # m, bump-target success: |bump - target| <= this
TEST_LAYOUT_SPACING, TEST_JITTER = 0.16, 0.03  # m, test layouts: bump1 = -0.4 + k·0.16 ± U(0.03), bump2 one spacing right

VARIANTS = ("normal", "punish", "test")
RENDER_MODES = ("rgb_array",)
DISCRETE_ACTIONS = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float32)  # left-soft, left-hard, right-soft, right-hard


def sample_bumps(rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """A normal-variant layout: ``([bump1, bump2], bump1_first)`` with bump1 ∈ [-0.28, 0.16],
    bump2 ∈ [-0.16, 0.28], separation ∈ [0.12, 0.32]. With probability ½ bump1 is drawn first and
    bump2 uniformly where the rules allow given bump1 (``bump1_first``), else the other way round."""
    bump1_first = bool(rng.random() < 0.5)
    if bump1_first:
        b1 = rng.uniform(-0.28, 0.16)
        b2 = rng.uniform(max(-0.16, b1 + 0.12), min(0.28, b1 + 0.32))
    else:
        b2 = rng.uniform(-0.16, 0.28)
        b1 = rng.uniform(max(-0.28, b2 - 0.32), min(0.16, b2 - 0.12))
    return np.array([b1, b2]), bump1_first


def sample_test_bumps(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A test-variant layout ``([bump1, bump2], k)``: k uniform in {1, 2, 3} (drawn per episode),
    bump1 = -0.4 + k·0.16 and bump2 = -0.4 + (k+1)·0.16, each shifted by its own U(-0.03, 0.03)."""
    k = int(rng.integers(1, 4))
    centres = -Y_HALF_RANGE + TEST_LAYOUT_SPACING * np.array([k, k + 1])
    return centres + rng.uniform(-TEST_JITTER, TEST_JITTER, size=2), k


def sample_start(rng: np.random.Generator, bumps: np.ndarray) -> float:
    """A finger start y uniform over [-0.38, 0.38] minus ±0.04 around each bump (``bumps`` sorted)."""
    edges = [-Y_LIMIT, *[e for b in bumps for e in (b - START_CLEARANCE, b + START_CLEARANCE)], Y_LIMIT]
    intervals = [(lo, hi) for lo, hi in zip(edges[::2], edges[1::2], strict=True) if hi > lo]
    u = rng.uniform(0.0, sum(hi - lo for lo, hi in intervals))
    for lo, hi in intervals:
        if u <= hi - lo:
            return float(lo + u)
        u -= hi - lo
    return float(intervals[-1][1])  # u landed on the total length (rounding)


def _layout(options: dict | None, allowed: tuple[str, ...]) -> dict:
    """The reset ``options`` that fix the layout instead of sampling it (scripted tests, demos)."""
    layout = dict(options or {})
    unknown = sorted(set(layout) - set(allowed))
    if unknown:
        raise UserError(f"reset options {', '.join(unknown)} are not allowed for this bumps env: {', '.join(allowed)}.")
    return layout


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"env.kwargs.{name}={value!r} is not allowed: true or false.")
    return value


class _BumpsBase(gym.Env):
    """What both tasks share: the world, the actions, the observation's finger part, rendering."""

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}  # an action takes up to 0.25 s of sim time

    def __init__(self, discrete: bool, privileged: bool, render_mode: str | None, stiffness_span: float) -> None:
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise UserError(f"render_mode={render_mode!r} is not allowed for the bumps envs: null or one of {', '.join(RENDER_MODES)}.")
        self.discrete = _flag(discrete, "discrete")
        self.privileged = _flag(privileged, "privileged")
        self.render_mode = render_mode
        self.stiffness_span = stiffness_span
        self.action_space = spaces.Discrete(4) if self.discrete else spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.scene = BumpsScene()
        self._start = np.zeros(0)  # bump positions at the episode's start, m

    def _act(self, action: Any) -> None:
        """Set the stiffness, move the carrier, let the finger settle (see the module doc)."""
        ratios = DISCRETE_ACTIONS[int(action)] if self.discrete else np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1, 1)
        self.scene.set_stiffness(STIFFNESS_MIN + (ratios[1] + 1.0) / 2.0 * self.stiffness_span)
        self.scene.move_carrier(float(np.clip(self.scene.carrier_y + STEP_LENGTH * ratios[0], -Y_LIMIT, Y_LIMIT)))
        self.scene.settle()

    def _begin(self, bumps: np.ndarray, start: float, rails: bool) -> None:
        self.scene.build(bumps, start, rails=rails)
        self.scene.set_stiffness(STIFFNESS_MIN)
        self._start = self.scene.bump_ys()

    def _at_edge(self) -> bool:
        return abs(self.scene.carrier_y) >= Y_LIMIT - 1e-9

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: the scene from the front and above, (240, 320, 3) uint8."""
        if self.render_mode is None:
            gym.logger.warn("render() was called on a bumps env made without render_mode; pass render_mode='rgb_array'.")
            return None
        return self.scene.render()

    def close(self) -> None:
        """Disconnect this env's pybullet client (idempotent)."""
        self.scene.close()


class BumpsEnv(_BumpsBase):
    """Two bumps on the table; push the right one (bump2) rightwards from its left without moving bump1.

    Observation float32: ``[y_finger, -θ_finger]`` (m, rad; y in [-0.4, 0.4], θ in ±1.0472), with
    ``privileged=True`` also ``[y_bump1, y_bump2]`` (m, current positions; for scripted controllers).
    Action: Box(2) ``[step_ratio, stiffness_ratio]`` or, with ``discrete=True``, Discrete(4) =
    {left-soft, left-hard, right-soft, right-hard}.

    ``variant``: ``"normal"`` (the users' normal variant), ``"punish"`` (moving bump1 or pushing bump2
    left gives -1), ``"test"`` (punish rules on three fixed layouts, one drawn per episode from the
    seeded RNG). Reward 1 when bump2 has moved right by more than 0.01 and the finger is left of it;
    the episode ends then, when bump1 moved by more than 0.001, bump2 moved left by more than 0.001,
    or the finger reached y = ±0.38. In the punish rules a violation takes precedence (-1, no success).

    ``info``: ``is_success`` (reward 1 reached), ``bumps`` (current bump y's, shape (2,)).
    ``reset(options={"bumps": [y1, y2], "finger_y": y})`` fixes the layout and/or start instead of
    sampling them (scripted tests, demos).
    """

    def __init__(self, variant: str = "normal", discrete: bool = False, privileged: bool = False,
                 render_mode: str | None = None) -> None:
        if variant not in VARIANTS:
            raise UserError(f"env.kwargs.variant={variant!r} is not allowed: one of {', '.join(VARIANTS)}.")
        self.variant = variant
        super().__init__(discrete, privileged, render_mode, stiffness_span=0.04)
        size = 4 if self.privileged else 2
        high = np.array([Y_HALF_RANGE, FINGER_LIMIT, Y_HALF_RANGE, Y_HALF_RANGE][:size], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        layout = _layout(options, ("bumps", "finger_y"))
        if "bumps" in layout:
            bumps = np.asarray(layout["bumps"], dtype=np.float64).reshape(2)
        else:
            bumps = sample_test_bumps(self.np_random)[0] if self.variant == "test" else sample_bumps(self.np_random)[0]
        start = float(layout["finger_y"]) if "finger_y" in layout else sample_start(self.np_random, bumps)
        self._begin(bumps, start, rails=False)
        return self._observation(), {"is_success": False, "bumps": self._start.copy()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._act(action)
        bumps = self.scene.bump_ys()
        moved = bumps - self._start
        violation = bool(abs(moved[0]) > MOVED or moved[1] < -MOVED)
        success = bool(moved[1] > PUSHED and self.scene.finger_y() < bumps[1])
        if self.variant != "normal" and violation:
            reward, success = -1.0, False
        else:
            reward = 1.0 if success else 0.0
        terminated = success or violation or self._at_edge()
        return self._observation(), reward, terminated, False, {"is_success": success, "bumps": bumps}

    def _observation(self) -> np.ndarray:
        values = [self.scene.finger_y(), -self.scene.finger_angle()]
        if self.privileged:
            values += list(self.scene.bump_ys())
        return np.clip(np.asarray(values, dtype=np.float32), self.observation_space.low, self.observation_space.high)


class BumpTargetEnv(_BumpsBase):
    """One bump on rails along y and a target y; push the bump to within 0.05 of the target.

    Observation float32: ``[y_finger / 0.4, θ_finger, y_target / 0.4]`` (θ in rad, not negated, as
    the users' task had it; docs/envs/bumps.md, section Observation), with ``privileged=True`` also
    ``y_bump / 0.4``; each clipped to ±1 (θ to ±1.0472). Actions as in :class:`BumpsEnv`; stiffness
    from 0.007 up to 0.057 N·m.

    Reset: bump ∈ U(-0.25, 0.25), target ∈ U(-0.3, 0.3) redrawn until 0.1 or more from the bump (so
    there is something to do), finger start uniform over [-0.38, 0.38] minus ±0.04 around the bump.
    Reward 1 and the episode ends when |bump - target| <= 0.05; it also ends (reward 0) when the
    finger reaches y = ±0.38. ``info``: ``is_success``, ``bumps`` (bump y, shape (1,)), ``target``.
    ``reset(options={"bump": y, "target": y, "finger_y": y})`` fixes any of them instead of sampling.
    """

    def __init__(self, discrete: bool = False, privileged: bool = False, render_mode: str | None = None) -> None:
        super().__init__(discrete, privileged, render_mode, stiffness_span=0.05)
        high = np.array([1.0, FINGER_LIMIT, 1.0, 1.0][: 4 if self.privileged else 3], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.target = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        layout = _layout(options, ("bump", "target", "finger_y"))
        bump = np.array([float(layout["bump"]) if "bump" in layout else self.np_random.uniform(-0.25, 0.25)])
        if "target" in layout:
            self.target = float(layout["target"])
        else:
            self.target = float(self.np_random.uniform(-0.3, 0.3))
            while abs(self.target - bump[0]) < 2 * TARGET_REACHED:
                self.target = float(self.np_random.uniform(-0.3, 0.3))
        start = float(layout["finger_y"]) if "finger_y" in layout else sample_start(self.np_random, bump)
        self._begin(bump, start, rails=True)
        return self._observation(), {"is_success": False, "bumps": self._start.copy(), "target": self.target}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._act(action)
        bumps = self.scene.bump_ys()
        success = bool(abs(bumps[0] - self.target) <= TARGET_REACHED)
        terminated = success or self._at_edge()
        info = {"is_success": success, "bumps": bumps, "target": self.target}
        return self._observation(), float(success), terminated, False, info

    def _observation(self) -> np.ndarray:
        values = [self.scene.finger_y() / Y_HALF_RANGE, self.scene.finger_angle(), self.target / Y_HALF_RANGE]
        if self.privileged:
            values.append(self.scene.bump_ys()[0] / Y_HALF_RANGE)
        return np.clip(np.asarray(values, dtype=np.float32), self.observation_space.low, self.observation_space.high)
