"""Partially observed versions of vector-observation envs (see docs/envs/pomdp.md, section Wrappers).

Each wrapper is an entry of an env config's ``wrappers`` list (``conf/env/Pendulum-p.yaml`` and the
like). From the env outward, as the configs stack them:

- :class:`MaskObservation` — keep some entries of the observation, hide the rest
  (Pendulum-p keeps cos θ, sin θ; Pendulum-v keeps θ̇; CartPoleContinuous-p keeps x, θ).
- :class:`PreviousAction` — append the action of the previous step (Pendulum-va).
- :class:`History` — the study's ``concatK``: the last ``k`` observations side by side, zero-padded
  after reset; ``k=1`` changes nothing, so every config carries it and ``env.wrappers.<i>.k=4``
  switches the window on.

All three want a 1-D ``Box`` observation ``(n,)`` and keep its dtype. The zeros that stand for
"no previous action" and "no earlier observation" are added to the bounds when a space excludes 0,
so every observation lies in the wrapper's ``observation_space``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hydrarl.errors import UserError


def _vector_space(space: spaces.Space, who: str) -> spaces.Box:
    if not (isinstance(space, spaces.Box) and len(space.shape) == 1):
        raise UserError(f"{who} needs a 1-D Box observation (n,); the env below it gives {space}.")
    return space


def _box_with_zero(low: np.ndarray, high: np.ndarray, dtype: np.dtype) -> spaces.Box:
    """``Box(low, high)`` widened to contain the zero vector (the padding these wrappers emit)."""
    return spaces.Box(np.minimum(low, 0).astype(dtype), np.maximum(high, 0).astype(dtype), dtype=dtype)


class MaskObservation(gym.ObservationWrapper):
    """Observation ``(n,)`` → its entries ``keep`` in that order, ``(len(keep),)``; bounds sliced too.

    ``keep``: distinct indices in ``0..n-1``. Pendulum-v1 ``[cos θ, sin θ, θ̇]``: ``[0, 1]`` hides the
    velocity, ``[2]`` the angle. Continuous cartpole ``[x, ẋ, θ, θ̇]``: ``[0, 2]`` hides the
    velocities, ``[1, 3]`` the positions.
    """

    def __init__(self, env: gym.Env, keep: list[int]):
        super().__init__(env)
        space = _vector_space(env.observation_space, "MaskObservation")
        size = space.shape[0]
        allowed = f"distinct integers in 0..{size - 1} (the observation has {size} entries)"
        if not isinstance(keep, list | tuple) or not keep:
            raise UserError(f"MaskObservation keep={keep!r}: a non-empty list of {allowed}.")
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < size for i in keep) or len(set(keep)) < len(keep):
            raise UserError(f"MaskObservation keep={list(keep)!r}: {allowed}.")
        self.keep = np.array(keep, dtype=np.intp)
        self.observation_space = spaces.Box(space.low[self.keep], space.high[self.keep], dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.keep]


class PreviousAction(gym.Wrapper):
    """Observation ``(n,)`` → ``(n + m,)``: the observation followed by the action of the previous step.

    Box actions are flattened (``m`` = their size, values as given); Discrete(m) actions are one-hot.
    Right after reset the action part is all zeros (no action yet). The result has the observation's
    dtype; the action part's bounds are the action space's (0..1 for one-hot), widened to contain 0.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = _vector_space(env.observation_space, "PreviousAction")
        actions = env.action_space
        if isinstance(actions, spaces.Box):
            low, high = actions.low.ravel(), actions.high.ravel()
        elif isinstance(actions, spaces.Discrete):
            low, high = np.zeros(actions.n), np.ones(actions.n)
        else:
            raise UserError(f"PreviousAction needs Box or Discrete actions; the env has {actions}.")
        self.observation_space = _box_with_zero(
            np.concatenate([space.low, low]), np.concatenate([space.high, high]), space.dtype
        )
        self.previous = np.zeros(low.shape, dtype=space.dtype)

    def reset(self, **kwargs) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        self.previous = np.zeros_like(self.previous)
        return self._with_action(obs), info

    def step(self, action) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if isinstance(self.env.action_space, spaces.Discrete):
            self.previous = np.zeros_like(self.previous)
            self.previous[int(action) - self.env.action_space.start] = 1
        else:
            self.previous = np.asarray(action, dtype=self.previous.dtype).ravel()
        return self._with_action(obs), reward, terminated, truncated, info

    def _with_action(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, self.previous]).astype(self.observation_space.dtype, copy=False)


class History(gym.Wrapper):
    """The study's ``concatK``: observation ``(n,)`` → ``(k*n,)``, the last ``k`` observations
    concatenated, oldest first, same dtype.

    After reset the window holds the reset observation at the end and zeros before it, so at step t
    (t = 0 at reset) the first ``max(k - 1 - t, 0)`` slots are zeros. ``k=1``: observation and space
    unchanged, so a config can carry the wrapper and ``env.wrappers.<i>.k=4`` turns it on.
    """

    def __init__(self, env: gym.Env, k: int = 1):
        super().__init__(env)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise UserError(f"History k={k!r}: an integer >= 1 (the number of observations in the window; 1 = no window).")
        self.k = k
        if k > 1:
            space = _vector_space(env.observation_space, "History")
            self.observation_space = _box_with_zero(np.tile(space.low, k), np.tile(space.high, k), space.dtype)
        self.window: deque[np.ndarray] = deque(maxlen=k)

    def reset(self, **kwargs) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self.window.extend([np.zeros_like(obs)] * (self.k - 1) + [obs])
        return self._joined(), info

    def step(self, action) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.window.append(obs)
        return self._joined(), reward, terminated, truncated, info

    def _joined(self) -> Any:
        return self.window[0] if self.k == 1 else np.concatenate(self.window)
