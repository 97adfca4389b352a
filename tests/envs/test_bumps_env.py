"""The pybullet bumps envs (src/envs/bumps) and their oracle (src/agents/bumps_oracle.py), on real
physics: independent worlds per env, the reset distribution, the reward and termination rules on
scripted trajectories, spaces, determinism, rendering, the configs and the factory."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import DummyVecEnv

pytest.importorskip("pybullet")

import hydrarl.envs.bumps  # noqa: E402,F401  (registers the ids)
from hydrarl.agents.bumps_oracle import BumpsOracle  # noqa: E402
from hydrarl.agents.controllers import ControllerMismatch, RandomController  # noqa: E402
from hydrarl.agents.factory import build_agent  # noqa: E402
from hydrarl.envs.bumps.env import FINGER_LIMIT, BumpTargetEnv, sample_bumps  # noqa: E402
from hydrarl.envs.factory import make_env, make_vec_env  # noqa: E402
from hydrarl.errors import UserError  # noqa: E402
from tests.helpers.compose import compose_cfg  # noqa: E402

LEFT_HARD, LEFT_SOFT, RIGHT_HARD, RIGHT_SOFT = [-1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]


@pytest.fixture
def make():
    """gym.make for bumps ids; every env made is closed after the test."""
    made = []

    def _make(env_id: str = "Bumps-v0", **kwargs) -> gym.Env:
        made.append(gym.make(env_id, **kwargs))
        return made[-1]

    yield _make
    for env in made:
        env.close()


def run(env, actions):
    """Step through ``actions`` until the episode ends; the list of (obs, reward, terminated, info)."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
        out.append((obs, reward, terminated, info))
        if terminated or truncated:
            break
    return out


# -- worlds ---------------------------------------------------------------------------------------

def test_two_envs_have_independent_worlds(make):
    a, b = make(), make()
    layout = {"bumps": [-0.1, 0.15], "finger_y": -0.2}
    a.reset(options=layout)
    obs_b, info_b = b.reset(options=layout)
    pushed = run(a, [RIGHT_HARD] * 6)
    assert abs(pushed[-1][3]["bumps"][0] - info_b["bumps"][0]) > 0.01        # a's finger shoved a's bump1
    np.testing.assert_array_equal(b.unwrapped.scene.bump_ys(), info_b["bumps"])  # b's bumps did not move
    assert b.unwrapped.scene.finger_y() == pytest.approx(obs_b[0], abs=1e-9)
    a.close()
    a.close()  # idempotent
    again = run(b, [RIGHT_HARD] * 6)  # b works on after a is gone, and reproduces a's trajectory
    assert len(again) == len(pushed)
    for (obs_a, *_), (obs_b, *_) in zip(pushed, again, strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)


def test_same_seed_same_trajectory_whatever_came_before(make):
    first, second = make(), make()
    second.reset(seed=99)
    run(second, [RIGHT_HARD, LEFT_SOFT, RIGHT_SOFT])  # an episode before: no trace of it may remain

    def trajectory(env):
        obs, info = env.reset(seed=11)
        rng = np.random.default_rng(0)
        steps = run(env, rng.uniform(-1, 1, (30, 2)))
        return [obs, info["bumps"]] + [x for step in steps for x in (step[0], step[1], step[3]["bumps"])]

    for x, y in zip(trajectory(first), trajectory(second), strict=True):
        np.testing.assert_array_equal(x, y)
    other = first.reset(seed=12)[1]["bumps"]
    assert not np.allclose(other, first.reset(seed=11)[1]["bumps"])


# -- reset distribution --------------------------------------------------------------------------

def test_reset_layouts_and_starts_follow_the_rules(make):
    env = make()
    orders = set()
    for seed in range(300):
        obs, info = env.reset(seed=seed)
        b1, b2 = info["bumps"]
        assert -0.28 - 1e-4 <= b1 <= 0.16 + 1e-4 and -0.16 - 1e-4 <= b2 <= 0.28 + 1e-4
        assert 0.12 - 1e-4 <= b2 - b1 <= 0.32 + 1e-4
        y = obs[0]
        assert -0.38 - 1e-4 <= y <= 0.38 + 1e-4
        assert abs(y - b1) >= 0.04 - 1e-4 and abs(y - b2) >= 0.04 - 1e-4
        sampled, bump1_first = sample_bumps(seeding.np_random(seed)[0])  # the env draws its layout with this sampler
        np.testing.assert_allclose(info["bumps"], sampled, atol=1e-4)
        orders.add(bump1_first)
    assert orders == {True, False}


def test_start_intervals_are_weighted_by_length(make):
    env = make()
    where = [0, 0, 0]
    for seed in range(150):
        obs, info = env.reset(seed=seed, options={"bumps": [-0.2, 0.2]})  # lengths 0.14, 0.32, 0.14 of 0.6
        where[int(np.searchsorted(info["bumps"], obs[0]))] += 1
    assert where[1] > where[0] and where[1] > where[2] and min(where) > 15


def test_test_variant_uses_the_three_fixed_layouts(make):
    env = make("BumpsTest-v0")
    seen = set()
    for seed in range(60):
        info = env.reset(seed=seed)[1]
        k = [k for k in (1, 2, 3) if np.all(np.abs(info["bumps"] - (-0.4 + 0.16 * np.array([k, k + 1]))) <= 0.03 + 1e-4)]
        assert len(k) == 1, info["bumps"]
        seen.add(k[0])
    assert seen == {1, 2, 3}


# -- rewards and ends on scripted trajectories ----------------------------------------------------

@pytest.mark.parametrize("env_id", ["Bumps-v0", "BumpsPunish-v0"])
def test_pushing_bump2_from_its_left_succeeds(make, env_id):
    env = make(env_id)
    _, start = env.reset(options={"bumps": [-0.15, 0.1], "finger_y": 0.0})
    steps = run(env, [RIGHT_HARD] * 5)
    obs, reward, terminated, info = steps[-1]
    assert (reward, terminated, info["is_success"]) == (1.0, True, True)
    assert [s[1] for s in steps[:-1]] == [0.0] * (len(steps) - 1) and not any(s[3]["is_success"] for s in steps[:-1])
    assert info["bumps"][1] - start["bumps"][1] > 0.01 and obs[0] < info["bumps"][1]
    assert abs(info["bumps"][0] - start["bumps"][0]) <= 0.001


@pytest.mark.parametrize("finger_y, rewarded", [(0.0, True), (0.2, False)])
def test_bump2_moved_right_counts_only_with_the_finger_on_its_left(make, finger_y, rewarded):
    env = make()
    env.reset(options={"bumps": [-0.2, 0.1], "finger_y": finger_y})
    scene = env.unwrapped.scene
    scene.client.resetBasePositionAndOrientation(scene.bumps[1], (0.6, 0.13, 0.0), (0, 0, 0, 1))  # bump2 displaced 0.03 right
    _, reward, terminated, _, info = env.step(np.array([0.0, -1.0], dtype=np.float32))
    assert (reward, terminated, info["is_success"]) == ((1.0, True, True) if rewarded else (0.0, False, False))


@pytest.mark.parametrize("env_id, penalty", [("Bumps-v0", 0.0), ("BumpsPunish-v0", -1.0)])
def test_moving_bump1_ends_the_episode(make, env_id, penalty):
    env = make(env_id)
    _, start = env.reset(options={"bumps": [-0.1, 0.15], "finger_y": -0.2})
    steps = run(env, [RIGHT_HARD] * 6)
    _, reward, terminated, info = steps[-1]
    assert terminated and reward == penalty and not info["is_success"]
    assert abs(info["bumps"][0] - start["bumps"][0]) > 0.001
    assert len(steps) < 6


@pytest.mark.parametrize("env_id, penalty", [("Bumps-v0", 0.0), ("BumpsPunish-v0", -1.0)])
def test_pushing_bump2_left_ends_the_episode(make, env_id, penalty):
    env = make(env_id)
    _, start = env.reset(options={"bumps": [-0.2, 0.1], "finger_y": 0.2})
    steps = run(env, [LEFT_HARD] * 6)
    _, reward, terminated, info = steps[-1]
    assert terminated and reward == penalty and not info["is_success"]
    assert info["bumps"][1] - start["bumps"][1] < -0.001


def test_reaching_the_y_limit_ends_the_episode(make):
    env = make()
    env.reset(options={"bumps": [-0.1, 0.15], "finger_y": -0.3})
    steps = run(env, [LEFT_SOFT] * 4)
    assert [s[2] for s in steps] == [False, True]  # -0.35, then stopped at -0.38
    assert steps[-1][0][0] == pytest.approx(-0.38, abs=1e-3) and steps[-1][1] == 0.0


def test_a_soft_finger_rides_over_a_bump_without_moving_it(make):
    env = make()
    _, start = env.reset(options={"bumps": [-0.1, 0.22], "finger_y": -0.16})
    steps = run(env, [RIGHT_SOFT] * 3 + [[0.4, -1.0]] + [[0.0, -1.0]] * 2)  # the carrier ends 0.11 past bump1, rests
    assert len(steps) == 6 and not any(s[2] for s in steps)
    angles = np.array([s[0][1] for s in steps])
    assert angles.max() > 0.5       # the fingertip caught on the bump and swung back...
    assert abs(angles[-1]) < 0.1    # ...then slid off it and came to rest
    assert max(abs(s[3]["bumps"][0] - start["bumps"][0]) for s in steps) < 0.001
    final = run(env, [RIGHT_HARD] * 6)[-1]  # now left of bump2: push it
    assert final[3]["is_success"]


def test_bump_target_rewards_reaching_the_target(make):
    env = make("BumpTarget-v0")
    obs, info = env.reset(options={"bump": 0.0, "target": 0.12, "finger_y": -0.1})
    assert obs[2] == pytest.approx(0.3) and info["target"] == 0.12
    steps = run(env, [RIGHT_HARD] * 8)
    assert [s[1] for s in steps[:-1]] == [0.0] * (len(steps) - 1) and not any(s[2] for s in steps[:-1])
    _, reward, terminated, info = steps[-1]
    assert (reward, terminated, info["is_success"]) == (1.0, True, True)
    assert abs(info["bumps"][0] - 0.12) <= 0.05

    env.reset(options={"bump": 0.0, "target": -0.15, "finger_y": -0.1})  # pushing away from the target
    steps = run(env, [RIGHT_HARD] * 4)
    assert not any(s[1] or s[2] for s in steps) and steps[-1][3]["bumps"][0] > 0.05


# -- spaces, kwargs, rendering -------------------------------------------------------------------

@pytest.mark.parametrize("env_id, size", [("Bumps-v0", 2), ("BumpsPunish-v0", 2), ("BumpsTest-v0", 2), ("BumpTarget-v0", 3)])
@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("privileged", [False, True])
def test_spaces(make, env_id, size, discrete, privileged):
    env = make(env_id, discrete=discrete, privileged=privileged)
    space = env.observation_space
    n = size + (2 if privileged and env_id != "BumpTarget-v0" else 1 if privileged else 0)
    assert isinstance(space, spaces.Box) and space.shape == (n,) and space.dtype == np.float32
    y_bound = 1.0 if env_id == "BumpTarget-v0" else 0.4
    np.testing.assert_allclose(space.high, [y_bound, FINGER_LIMIT, *[y_bound] * (n - 2)], rtol=1e-6)
    np.testing.assert_array_equal(space.low, -space.high)
    if discrete:
        assert env.action_space == spaces.Discrete(4)
    else:
        assert env.action_space == spaces.Box(-1.0, 1.0, (2,), np.float32)
    obs, _ = env.reset(seed=0)
    assert space.contains(obs)
    obs, reward, *_ = env.step(env.action_space.sample())
    assert space.contains(obs) and isinstance(reward, float)


def test_discrete_actions_map_onto_left_right_soft_hard(make):
    env = make(discrete=True)
    layout = {"bumps": [-0.1, 0.15], "finger_y": 0.0}
    for action, dy in ((0, -0.05), (1, -0.05), (2, 0.05), (3, 0.05)):
        obs, _ = env.reset(options=layout)
        assert env.step(action)[0][0] == pytest.approx(dy, abs=1e-3)
    env.reset(options={"bumps": [-0.1, 0.15], "finger_y": -0.2})
    assert run(env, [3] * 6)[-1][2]      # right-hard shoves bump1: the episode ends
    env.reset(options={"bumps": [-0.1, 0.22], "finger_y": -0.16})
    assert not any(s[2] for s in run(env, [2] * 3))  # right-soft rides over it


def test_bad_kwargs_are_user_errors():
    with pytest.raises(UserError, match="normal, punish, test"):
        gym.make("Bumps-v0", variant="hard")
    with pytest.raises(UserError, match="true or false"):
        gym.make("Bumps-v0", privileged="yes")
    with pytest.raises(UserError, match="rgb_array"):
        BumpTargetEnv(render_mode="rgb_list")
    env = gym.make("Bumps-v0")
    with pytest.raises(UserError, match="bumps, finger_y"):
        env.reset(options={"target": 0.1})
    env.close()


def test_render_shows_both_bumps(make):
    env = make(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    assert np.sum((r > 150) & (g < 80) & (b < 80)) > 20   # red bump1
    assert np.sum((b > 150) & (r < 80) & (g < 120)) > 20  # blue bump2
    assert env.metadata["render_fps"] > 0


# -- configs, factory, oracle --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Bumps", "BumpsPunish", "BumpsTest", "BumpTarget"])
def test_configs_build_through_the_factory(name):
    env = make_env(compose_cfg([f"env={name}", "algorithm=sac"]).env)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert len(env.step(env.action_space.sample())) == 5
    env.close()


def test_importing_hydrarl_does_not_import_pybullet():
    code = "import sys, hydrarl, hydrarl.envs, hydrarl.envs.bumps; assert 'pybullet' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def success_rate(model, venv, episodes: int) -> float:
    obs, state, starts, results = venv.reset(), None, np.ones(1, dtype=bool), []
    while len(results) < episodes:
        actions, state = model.predict(obs, state=state, episode_start=starts)
        obs, _, starts, infos = venv.step(actions)
        results += [info["is_success"] for info, done in zip(infos, starts, strict=True) if done]
    return float(np.mean(results))


def test_oracle_beats_random():
    cfg = compose_cfg(["env=Bumps", "algorithm=bumps_oracle", "env.kwargs.privileged=true"])
    venv = make_vec_env(cfg.env, seed=0, training=False)
    oracle = build_agent(cfg.algorithm, venv, 0, "cpu", name="bumps_oracle", env_name="Bumps")
    ours = success_rate(oracle, venv, 20)
    venv.seed(0)
    chance = success_rate(RandomController("MlpPolicy", venv, seed=0), venv, 20)
    venv.close()
    assert ours >= 0.6 and ours >= chance + 0.4, (ours, chance)


def test_oracle_needs_the_privileged_observation():
    venv = DummyVecEnv([lambda: gym.make("Bumps-v0")])
    with pytest.raises(ControllerMismatch, match="privileged=true"):
        BumpsOracle("MlpPolicy", venv)
    cfg = compose_cfg(["env=Bumps", "algorithm=bumps_oracle"])
    with pytest.raises(UserError, match="algorithm=bumps_oracle .*cannot act in env=Bumps.*privileged=true"):
        build_agent(cfg.algorithm, venv, 0, "cpu", name="bumps_oracle", env_name="Bumps")
    venv.close()
