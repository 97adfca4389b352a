"""Cassie's reward terms as pure functions, on known numbers (src/envs/cassie/reward.py; docs/envs/cassie.md, Reward).
The weighted sum in a real step is tested in test_cassie_env.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hydrarl.envs.cassie import reward as R


def test_stance_and_swing_foot_terms():
    assert R.stance_indicator(0.25, 10) > 0.999 and R.stance_indicator(0.75, 10) < 0.001
    assert R.stance_indicator(0.0, 10) == pytest.approx(0.5)
    assert R.stance_indicator(0.3, 10) + R.stance_indicator(0.8, 10) == pytest.approx(1.0)
    loaded_still = sum(R.foot_terms(1.0, force=300, speed=0.0, force_sigma=100, speed_sigma=0.5))
    assert loaded_still == pytest.approx(1 - math.exp(-3))
    assert sum(R.foot_terms(0.0, force=300, speed=0.0, force_sigma=100, speed_sigma=0.5)) == pytest.approx(-loaded_still)
    assert sum(R.foot_terms(0.0, force=0, speed=2.0, force_sigma=100, speed_sigma=0.5)) > 0.9  # a swinging foot
    # swing height: paid in swing only, up to the target
    assert [R.swing_height(0.0, h, 0.08) for h in (-0.01, 0.0, 0.04, 0.08, 0.2)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert R.swing_height(1.0, 0.08, 0.08) == 0.0 and R.swing_height(0.25, 0.04, 0.08) == pytest.approx(0.375)


def test_foot_height_term_pays_the_swing_foot_lifted():
    """With the left foot in swing (phase 0.75) held 6 cm up and the right on the floor, the term is 6/8 of its
    weight; at phase 0.25 (the right foot in swing, on the floor) it is ~0."""
    cfg = R.RewardConfig.from_kwargs({"weights": {"foot_height": 2.0}})
    args = dict(foot_force=np.array([0.0, 300.0]), foot_speed=np.zeros(2), foot_height=np.array([0.06, 0.0]), vx=0.0,
                command=0.3, quat=np.array([1.0, 0, 0, 0]), action=np.zeros(10), torque=np.zeros(10), torque_limit=np.ones(10))
    assert R.gait_reward(cfg, 0.75, **args)["foot_height"] == pytest.approx(2.0 * 0.75, rel=1e-3)
    assert R.gait_reward(cfg, 0.25, **args)["foot_height"] == pytest.approx(0.0, abs=1e-3)
    assert R.gait_reward(R.RewardConfig(), 0.75, **args)["foot_height"] == 0.0  # off by default


def test_speed_upright_and_penalties():
    values = {v: R.speed_tracking(v, 0.6, 0.25) for v in (0.2, 0.5, 0.6, 0.7, 1.0)}
    assert values[0.6] == 1.0 and max(values, key=values.get) == 0.6 and values[0.5] == pytest.approx(math.exp(-0.04))
    assert [R.progress(v, 0.6) for v in (-0.3, 0.0, 0.4, 0.6, 1.5)] == [-0.3, 0.0, 0.4, 0.6, 0.6]
    assert [R.overspeed(v, 0.6) for v in (-0.3, 0.6, 1.5)] == pytest.approx([0.0, 0.0, -0.9])
    assert R.upright(np.array([1.0, 0, 0, 0]), 10) == 1.0
    half = math.radians(15)
    assert R.upright(np.array([math.cos(half), math.sin(half), 0, 0]), 10) == pytest.approx(math.exp(-10 * math.sin(half) ** 2))
    assert R.squared_norm_penalty(np.array([1.0, -2.0])) == -5.0
    assert R.squared_norm_penalty(np.array([50.0, 10.0]), np.array([100.0, 10.0])) == -1.25


def test_users_speed_reward_on_known_numbers():
    terms = R.speed_reward(-0.5, np.array([0.0, 1.0, 0.0, 0.0]))
    assert terms["speed"] == -0.25 and terms["orientation"] == pytest.approx(10 * math.exp(-3 * math.sqrt(2)))
    assert R.speed_reward(2.0, np.array([1.0, 0, 0, 0])) == {"speed": 4.0, "orientation": 10.0}
