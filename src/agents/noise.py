"""Exploration-noise builders for ``action_noise`` in algorithm configs.

Written as ``{_target_: hydrarl.agents.noise.normal, _partial_: true, sigma: 0.1}``; the agent
factory completes the partial with the env's action space, so one config fits any action size.
``sigma`` is in units of the policy's [-1, 1]-scaled actions.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.noise import NormalActionNoise


def normal(action_space: spaces.Box, sigma: float = 0.1) -> NormalActionNoise:
    """Independent Gaussian noise N(0, sigma^2) on each action dimension."""
    dim = int(np.prod(action_space.shape))
    return NormalActionNoise(mean=np.zeros(dim), sigma=np.full(dim, float(sigma)))

