"""CommandChanges (src/envs/cassie/commands.py) on the real Cassie env: the command changes after each hold time, in
training copies only, reproducibly, and the observation and reward use the new one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hydrarl.envs.cassie.commands import CommandChanges
from hydrarl.envs.cassie.env import OBS_BLOCKS, CassieEnv
from hydrarl.envs.factory import make_env
from hydrarl.errors import UserError
from tests.helpers.compose import compose_cfg

pytestmark = pytest.mark.usefixtures("menagerie")  # (tests/conftest.py) skip without the model, point at it
WRAPPER = "hydrarl.envs.cassie.commands.CommandChanges"
SPEED = OBS_BLOCKS["speed"].start


def _episode(env, seed: int, steps: int) -> tuple[list[float], list[float], list[dict]]:
    """Commands seen in the observations and in info, and the reward terms, over ``steps`` zero actions."""
    obs, info = env.reset(seed=seed)
    seen, said, terms = [float(obs[SPEED])], [info["speed_command"]], []
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(np.zeros(10))
        seen.append(float(obs[SPEED]))
        said.append(info["speed_command"])
        terms.append(info["reward_terms"])
    return seen, said, terms


def test_the_command_changes_after_each_hold_in_training_copies_only():
    overrides = ["env=Cassie", "algorithm=ppo", "env.max_episode_steps=100",
                 f"env.wrappers=[{{_target_: {WRAPPER}, hold: 0.5, speeds: [0.2, 0.5, 0.8], only: train}}]"]
    cfg = compose_cfg(overrides).env
    train, evaluate = make_env(cfg, training=True), make_env(cfg, training=False)
    seen, said, terms = _episode(train, seed=3, steps=60)
    assert seen == pytest.approx(said)  # the observation shows the command the step was rewarded for
    changes = [t for t in range(1, len(said)) if said[t] != said[t - 1]]
    assert set(said[20:]) <= {0.2, 0.5, 0.8} and len(set(said)) >= 2
    # a new command is drawn every 20 steps (0.5 s at 40 Hz); a draw may repeat the old one
    assert all(t % 20 == 0 for t in changes) and changes
    cassie = train.unwrapped
    vx, term = cassie.data.qvel[cassie.layout.free_dof], terms[-1]
    sigma, weight = cassie.reward_cfg.speed_sigma, cassie.reward_cfg.weights["speed"]
    assert term["speed"] == pytest.approx(weight * math.exp(-(vx - said[-1]) ** 2 / sigma))
    # the same seed gives the same commands; the evaluation copy keeps its one command
    assert _episode(train, seed=3, steps=60)[1] == said
    assert len(set(_episode(evaluate, seed=3, steps=60)[1])) == 1
    train.close()
    evaluate.close()


def test_hold_times_are_drawn_in_their_range():
    env = CommandChanges(CassieEnv(speeds=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]), hold=[0.25, 0.5])
    _, said, _ = _episode(env, seed=0, steps=150)
    changes = [t for t in range(1, len(said)) if said[t] != said[t - 1]]
    gaps = np.diff([0, *changes])
    assert len(changes) >= 6 and gaps.min() >= 10 and gaps.max() <= 40  # 10-20 steps, a repeated draw doubles a gap
    env.close()


@pytest.mark.parametrize(("kwargs", "match"), [({"hold": 0}, "hold=0"), ({"hold": [3, 1]}, r"hold=\[3, 1\]"),
                                               ({"hold": "long"}, "hold='long'"), ({"speeds": []}, r"speeds=\[\]")])
def test_bad_settings_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        CommandChanges(CassieEnv(), **kwargs)


def test_an_env_without_a_command_is_refused():
    import gymnasium as gym

    with pytest.raises(UserError, match="wraps Cassie only"):
        CommandChanges(gym.make("Pendulum-v1"))
