"""Wrappers for gymnasium ``CarRacing-v3`` (``conf/env/CarRacing.yaml``, ``CarRacingContinuous.yaml``).

The raw env (``continuous=True``): observations are RGB frames ``(96, 96, 3)`` uint8 (a top view;
the bottom 12 rows are the dashboard), actions ``Box(3)`` float32 = steer in [-1, 1] (-1 left),
gas in [0, 1], brake in [0, 1]; one step is one frame (1/50 s); reward -0.1 per frame plus
1000/N for each new track tile of N, -100 (and ``terminated``) when the car leaves the playfield;
``terminated`` when the lap is done; 1000 frames at most (TimeLimit).

From the env outward, as ``conf/env/CarRacing.yaml`` stacks them (our users' study,
see docs/envs/carracing.md):

- :class:`LenientTermination` — ends hopeless episodes early, as ``truncated``; sees raw frames and
  raw per-frame rewards, so it sits directly on the env.
- :class:`FrameSkip` — one agent step = ``skip`` frames with the same action, rewards summed.
- :class:`ClipReward` — each (skipped) step's reward clipped to ``[low, high]``.
- :class:`GrayScale` — RGB ``(H, W, 3)`` → channel-first ``(1, h, w)``, optionally cropped.
- :class:`FrameStack` — the last ``n`` frames on the channel axis, ``(n, h, w)``.
- :class:`DiscreteActions` — Discrete(12) onto the Box(3) actions.

gymnasium's own wrappers were not reused: ``GrayscaleObservation`` gives channel-last
``(H, W, 1)``, ``FrameStackObservation`` a new leading axis ``(n, H, W, 1)`` (SB3's CnnPolicy wants
``(C, H, W)``), ``MaxAndSkipObservation`` max-pools the last two frames (the study kept the last
frame), ``ClipReward`` names its bounds ``min_reward``/``max_reward``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hydrarl.errors import UserError

ROAD_ROWS = 0.85          # the road check looks at the top 85 % of the rows (the dashboard is below)
ROAD_LOW, ROAD_HIGH = 100, 150  # a road pixel has all three RGB channels in [100, 150] (road: 102..107 grey)


def road_visible(frame: np.ndarray) -> bool:
    """True if any pixel in the top 85 % of the rows of an RGB frame ``(H, W, 3)`` uint8 has all three
    channels in [100, 150] (the default track greys; grass is (102, 204|230, 102), kerbs red/white).
    With ``domain_randomize=True`` the road colour is random and this check means nothing."""
    top = frame[: int(frame.shape[0] * ROAD_ROWS), :, :3]
    return bool(np.any(np.all((top >= ROAD_LOW) & (top <= ROAD_HIGH), axis=-1)))


def _rgb_space(space: spaces.Space, who: str) -> spaces.Box:
    if not (isinstance(space, spaces.Box) and len(space.shape) == 3 and space.shape[-1] == 3):
        raise UserError(f"{who} needs RGB frames (H, W, 3); the env below it gives {space}. Put it before GrayScale.")
    return space


class LenientTermination(gym.Wrapper):
    """End an episode early, as ``truncated``, when it has become hopeless.

    Rules (each ``None``/``False`` switches it off), checked after every env step that did not
    already end the episode, in this order:

    - ``max_penalty`` (reward units): the episode's cumulative reward is <= ``max_penalty``;
    - ``consecutive_negative`` (steps): that many negative step rewards in a row;
    - ``road_check``: no road pixel in the frame (:func:`road_visible`), except during the first
      ``grace_steps`` steps after reset.

    The first rule that fires is named in ``info["termination_rule"]`` (``"max_penalty"``,
    ``"consecutive_negative"`` or ``"road_check"``). Steps, rewards and frames are those of the env
    below: placed on the raw env (as in the configs) they are frames, raw rewards and RGB frames
    ``(96, 96, 3)`` uint8. Observation and action spaces are unchanged.

    ``grace_steps=0`` is enough for CarRacing-v3: the first second of an episode zooms in from a view
    of the whole track, and on 40 seeds x 60 frames (random actions) every frame, the reset frame
    included, showed at least 53 road pixels; driving off the road takes >= 74 frames to lose sight
    of it. The key is there for renderings where that does not hold.

    ``truncated`` (not ``terminated``) because the state is not terminal: SB3's off-policy agents
    then bootstrap from the value of the last state, as they do at the time limit.
    """

    RULES = ("max_penalty", "consecutive_negative", "road_check")

    def __init__(
        self,
        env: gym.Env,
        max_penalty: float | None = -30.0,
        consecutive_negative: int | None = 25,
        road_check: bool | None = True,
        grace_steps: int = 0,
    ):
        super().__init__(env)
        if consecutive_negative is not None and int(consecutive_negative) < 1:
            raise UserError(f"LenientTermination consecutive_negative={consecutive_negative!r}: an integer >= 1, or null for off.")
        if int(grace_steps) < 0:
            raise UserError(f"LenientTermination grace_steps={grace_steps!r}: an integer >= 0.")
        if road_check:
            _rgb_space(env.observation_space, "LenientTermination road_check")
        self.max_penalty = None if max_penalty is None else float(max_penalty)
        self.consecutive_negative = None if consecutive_negative is None else int(consecutive_negative)
        self.road_check = bool(road_check)
        self.grace_steps = int(grace_steps)
        self._return, self._negatives, self._steps = 0.0, 0, 0

    def reset(self, **kwargs) -> tuple[Any, dict]:
        self._return, self._negatives, self._steps = 0.0, 0, 0
        return self.env.reset(**kwargs)

    def step(self, action) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        self._return += float(reward)
        self._negatives = self._negatives + 1 if reward < 0 else 0
        if not (terminated or truncated):
            rule = self._rule(obs)
            if rule is not None:
                truncated = True
                info = {**info, "termination_rule": rule}
        return obs, reward, terminated, truncated, info

    def _rule(self, obs: np.ndarray) -> str | None:
        if self.max_penalty is not None and self._return <= self.max_penalty:
            return "max_penalty"
        if self.consecutive_negative is not None and self._negatives >= self.consecutive_negative:
            return "consecutive_negative"
        if self.road_check and self._steps > self.grace_steps and not road_visible(obs):
            return "road_check"
        return None


class FrameSkip(gym.Wrapper):
    """Repeat each action ``skip`` times; the reward is the sum of the frames' rewards (reward units
    per agent step), the observation and info those of the last frame played. Stops early when a
    frame ends the episode (``terminated`` or ``truncated``). Spaces unchanged."""

    def __init__(self, env: gym.Env, skip: int = 3):
        super().__init__(env)
        if int(skip) < 1:
            raise UserError(f"FrameSkip skip={skip!r}: an integer >= 1 (1 = no skipping).")
        self.skip = int(skip)

    def step(self, action) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        total = 0.0
        for _ in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class ClipReward(gym.RewardWrapper):
    """Clip each step's reward to ``[low, high]`` (reward units; defaults -10 and 1, the study's)."""

    def __init__(self, env: gym.Env, low: float = -10.0, high: float = 1.0):
        super().__init__(env)
        if float(low) > float(high):
            raise UserError(f"ClipReward low={low} > high={high}.")
        self.low, self.high = float(low), float(high)

    def reward(self, reward: SupportsFloat) -> float:
        return min(max(float(reward), self.low), self.high)


def _crop_slices(crop: Mapping | None, shape: tuple[int, ...]) -> tuple[slice, slice]:
    crop = dict(crop or {})
    unknown = set(crop) - {"rows", "cols"}
    if unknown:
        raise UserError(f"GrayScale crop has keys rows and cols ([start, stop] each); not {', '.join(sorted(unknown))}.")
    slices = []
    for key, size in (("rows", shape[0]), ("cols", shape[1])):
        bounds = crop.get(key)
        if bounds is None:
            slices.append(slice(None))
            continue
        if not isinstance(bounds, Sequence) or len(bounds) != 2:
            raise UserError(f"GrayScale crop.{key}={bounds!r}: a pair [start, stop] (Python slice bounds, null for an open end).")
        cut = slice(*bounds)
        if len(range(size)[cut]) == 0:
            raise UserError(f"GrayScale crop.{key}={list(bounds)} leaves no {key} of {size}.")
        slices.append(cut)
    return slices[0], slices[1]


class GrayScale(gym.ObservationWrapper):
    """RGB frame ``(H, W, 3)`` uint8 → grey, channel-first ``(1, h, w)`` (SB3's CnnPolicy layout).

    Grey = 0.299 R + 0.587 G + 0.114 B (ITU-R 601, as OpenCV), rounded.
    ``crop``: ``{rows: [start, stop], cols: [start, stop]}`` (Python slice bounds, either key may be
    left out), applied first; e.g. ``{rows: [0, 84]}`` cuts the 12-row dashboard of CarRacing.
    ``scale``:

    - ``False`` (default): uint8 in 0..255, ``Box(0, 255, (1, h, w), uint8)``. SB3's CnnPolicy divides
      by 255 itself (``normalize_images=True``), and replay buffers hold 1 byte per pixel instead
      of 4 (a 100k-transition DQN buffer of 96x96 frames: 1.8 GB instead of 7.4 GB).
    - ``True``: float32 in [0, 1], ``Box(0, 1, (1, h, w), float32)``, for models that want floats;
      an SB3 CnnPolicy then needs ``policy_kwargs.normalize_images=false``.
    """

    WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

    def __init__(self, env: gym.Env, crop: Mapping | None = None, scale: bool = False):
        super().__init__(env)
        space = _rgb_space(env.observation_space, "GrayScale")
        self.rows, self.cols = _crop_slices(crop, space.shape)
        self.scale = bool(scale)
        h, w = len(range(space.shape[0])[self.rows]), len(range(space.shape[1])[self.cols])
        if self.scale:
            self.observation_space = spaces.Box(0.0, 1.0, (1, h, w), np.float32)
        else:
            self.observation_space = spaces.Box(0, 255, (1, h, w), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        grey = observation[self.rows, self.cols, :3] @ self.WEIGHTS
        if self.scale:
            return (np.round(grey) / 255.0).astype(np.float32)[None]
        return np.round(grey).astype(np.uint8)[None]


class FrameStack(gym.Wrapper):
    """The last ``n`` observations ``(C, H, W)`` concatenated on the channel axis → ``(n*C, H, W)``,
    oldest first, same dtype. After reset the first frame fills all ``n`` slots. ``n=1``: unchanged."""

    def __init__(self, env: gym.Env, n: int = 1):
        super().__init__(env)
        space = env.observation_space
        if int(n) < 1:
            raise UserError(f"FrameStack n={n!r}: an integer >= 1 (1 = no stacking).")
        if not (isinstance(space, spaces.Box) and len(space.shape) == 3 and int(np.argmin(space.shape)) == 0):
            raise UserError(f"FrameStack needs channel-first images (C, H, W); the env below it gives {space}. Put it after GrayScale.")
        self.n = int(n)
        self.frames: deque[np.ndarray] = deque(maxlen=self.n)
        self.observation_space = spaces.Box(
            np.concatenate([space.low] * self.n), np.concatenate([space.high] * self.n), dtype=space.dtype
        )

    def reset(self, **kwargs) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        self.frames.extend([obs] * self.n)
        return self._stacked(), info

    def step(self, action) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(obs)
        return self._stacked(), reward, terminated, truncated, info

    def _stacked(self) -> np.ndarray:
        return self.frames[0] if self.n == 1 else np.concatenate(self.frames, axis=0)


# index -> (steer, gas, brake): steer {-1, 0, 1} x gas {1, 0} x brake {0.2, 0}, last factor fastest.
ACTIONS = np.array(list(itertools.product((-1.0, 0.0, 1.0), (1.0, 0.0), (0.2, 0.0))), dtype=np.float32)


class DiscreteActions(gym.ActionWrapper):
    """Discrete(12) → the raw ``Box(3)`` action (steer, gas, brake), float32, via :data:`ACTIONS`:

    ====  =====  ===  =====      ====  =====  ===  =====      ====  =====  ===  =====
    0     -1     1    0.2        4      0     1    0.2        8      1     1    0.2
    1     -1     1    0          5      0     1    0          9      1     1    0
    2     -1     0    0.2        6      0     0    0.2        10     1     0    0.2
    3     -1     0    0          7      0     0    0          11     1     0    0
    ====  =====  ===  =====      ====  =====  ===  =====      ====  =====  ===  =====

    ``continuous=True`` keeps the Box(3) actions unchanged (the wrapper then does nothing), so one
    override turns the grey-frame CarRacing config into one for sac, td3, ...
    """

    def __init__(self, env: gym.Env, continuous: bool = False):
        super().__init__(env)
        space = env.action_space
        if not (isinstance(space, spaces.Box) and space.shape == (3,)):
            raise UserError(f"DiscreteActions needs the Box(3) actions of CarRacing(continuous=True); the env has {space}.")
        self.continuous = bool(continuous)
        if not self.continuous:
            self.action_space = spaces.Discrete(len(ACTIONS))

    def action(self, action) -> np.ndarray:
        if self.continuous:
            return action
        return ACTIONS[int(action)].copy()
