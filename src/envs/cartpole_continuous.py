"""Continuous-action cartpole (see docs/envs/pomdp.md, section Continuous CartPole); registers ``ContinuousCartPole-v0``.

Env configs name it ``hydrarl.envs.cartpole_continuous:ContinuousCartPole-v0``, so gymnasium imports
this module (and so registers the id) only when such an env is made.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

ENV_ID = "ContinuousCartPole-v0"
MAX_EPISODE_STEPS = 1000  # the study's long version


class ContinuousCartPoleEnv(gym.Env):
    """Gymnasium's CartPole physics driven by a continuous force.

    State and observation ``[x, ẋ, θ, θ̇]`` float32 (m, m/s, rad, rad/s; θ = 0 upright, positive
    clockwise); bounds ±4.8 m and ±24° for x and θ (twice the failure limits), unbounded velocities.
    Action ``Box([-1], [1])``: the force on the cart is ``30·a`` N (a clipped to [-1, 1]), where
    gymnasium's CartPole pushes ±10 N.

    Same constants and equations as gymnasium's ``CartPoleEnv`` (Florian 2005, with its
    4/3 - m_p cos²θ / M denominator): g 9.8 m/s², cart 1.0 kg, pole 0.1 kg, half-length 0.5 m,
    explicit Euler with dt = 0.02 s. Reward 1 every step, the failing one included; ``terminated``
    when |x| > 2.4 m or |θ| > 12°. Reset draws every state entry from U(-0.05, 0.05) with the
    seeded ``np_random``. Registered with a 1000-step time limit (``truncated``).

    Rendering (``rgb_array`` (400, 600, 3) uint8, or ``human``) is gymnasium's CartPole drawing of
    this state, by an inner ``CartPoleEnv`` that only draws.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    length = 0.5  # half the pole's length (m)
    force_mag = 30.0  # N at |a| = 1
    tau = 0.02  # s per step
    x_threshold = 2.4
    theta_threshold_radians = 12 * 2 * math.pi / 360

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: one of {self.metadata['render_modes']} or None.")
        self.render_mode = render_mode
        high = np.array([self.x_threshold * 2, np.inf, self.theta_threshold_radians * 2, np.inf], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.state: np.ndarray | None = None
        self._painter = CartPoleEnv(render_mode=render_mode) if render_mode is not None else None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.state = self.np_random.uniform(low=-0.05, high=0.05, size=(4,))
        if self.render_mode == "human":
            self.render()
        return self.state.astype(np.float32), {}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.state is None:
            raise RuntimeError("Call reset before step.")
        force = self.force_mag * float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        x, x_dot, theta, theta_dot = self.state
        cos, sin = np.cos(theta), np.sin(theta)
        total_mass = self.masscart + self.masspole
        polemass_length = self.masspole * self.length
        temp = (force + polemass_length * theta_dot * theta_dot * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (self.length * (4.0 / 3.0 - self.masspole * cos * cos / total_mass))
        x_acc = temp - polemass_length * theta_acc * cos / total_mass
        self.state = np.array(
            [x + self.tau * x_dot, x_dot + self.tau * x_acc, theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc]
        )
        terminated = abs(self.state[0]) > self.x_threshold or abs(self.state[2]) > self.theta_threshold_radians
        if self.render_mode == "human":
            self.render()
        return self.state.astype(np.float32), 1.0, bool(terminated), False, {}

    def render(self) -> np.ndarray | None:
        if self._painter is None:
            gym.logger.warn(f'render() without a render_mode: make the env with render_mode="rgb_array" ({ENV_ID}).')
            return None
        self._painter.state = self.state
        return self._painter.render()

    def close(self) -> None:
        if self._painter is not None:
            self._painter.close()


gym.register(id=ENV_ID, entry_point=f"{__name__}:ContinuousCartPoleEnv", max_episode_steps=MAX_EPISODE_STEPS)
