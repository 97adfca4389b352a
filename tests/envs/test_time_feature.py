"""The time-feature wrapper of the goal envs widens its own observation space only, not the wrapped env's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hydrarl.config.compose import compose
from hydrarl.envs.factory import make_env


@pytest.mark.parametrize("env_name, width", [("FetchReach", 10), ("PointMaze", 4)])
def test_the_wrapped_env_keeps_its_space_and_the_checker_stays_quiet(env_name, width):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium's passive checker warned on every reset and step
        env = make_env(compose([f"env={env_name}"]).env)
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            obs, *_ = env.step(env.action_space.sample())
    assert env.unwrapped.observation_space["observation"].shape == (width,)
    assert env.observation_space["observation"].shape == (width + 1,)
    assert obs["observation"].shape == (width + 1,) and env.observation_space.contains(obs)
    assert 0.0 < obs["observation"][-1] < 1.0  # the remaining fraction of the episode, after 3 steps
    env.close()


def test_a_box_space_is_widened_for_the_wrapper_only():
    import gymnasium as gym

    from hydrarl.envs.time_feature import TimeFeatureWrapper

    inner = gym.make("Pendulum-v1")
    wrapped = TimeFeatureWrapper(inner)
    assert inner.observation_space.shape == (3,) and wrapped.observation_space.shape == (4,)
    obs, _ = wrapped.reset(seed=0)
    assert wrapped.observation_space.contains(obs) and obs[-1] == np.float32(1.0)
