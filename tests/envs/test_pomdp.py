"""POMDP wrappers (src/envs/pomdp.py), the continuous cartpole (src/envs/cartpole_continuous.py) and
their env configs, on real gymnasium envs: masked entries against the true state, the previous-action
and history windows step by step, the cartpole equations against gymnasium's CartPole, and every new
config built through the project's factory."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from hydrarl.envs.cartpole_continuous import ContinuousCartPoleEnv
from hydrarl.envs.factory import make_env
from hydrarl.envs.pomdp import History, MaskObservation, PreviousAction
from hydrarl.errors import UserError
from tests.helpers.compose import compose_cfg

CARTPOLE = "hydrarl.envs.cartpole_continuous:ContinuousCartPole-v0"
TWELVE_DEGREES = 12 * 2 * math.pi / 360


def pendulum_state(env: gym.Env) -> np.ndarray:
    """Pendulum-v1's full observation [cos θ, sin θ, θ̇] from its true state (θ, θ̇)."""
    theta, theta_dot = env.unwrapped.state
    return np.array([math.cos(theta), math.sin(theta), theta_dot])


def actions(env: gym.Env, n: int, seed: int = 0) -> list[np.ndarray]:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(n)]


@pytest.mark.parametrize("keep", [[0, 1], [2], [2, 0]])
def test_mask_keeps_the_chosen_pendulum_entries(keep):
    env = MaskObservation(gym.make("Pendulum-v1"), keep=keep)
    full = gym.make("Pendulum-v1").observation_space
    assert env.observation_space.shape == (len(keep),)
    np.testing.assert_array_equal(env.observation_space.low, full.low[keep])
    np.testing.assert_array_equal(env.observation_space.high, full.high[keep])
    obs, _ = env.reset(seed=1)
    for action in [None, *actions(env, 20)]:
        if action is not None:
            obs, *_ = env.step(action)
        assert obs.shape == (len(keep),) and env.observation_space.contains(obs)
        np.testing.assert_allclose(obs, pendulum_state(env)[keep], atol=1e-6)


@pytest.mark.parametrize("keep", [[0, 2], [1, 3]])
def test_mask_keeps_the_chosen_cartpole_entries(keep):
    env = MaskObservation(gym.make(CARTPOLE), keep=keep)
    obs, _ = env.reset(seed=2)
    for action in [None, *actions(env, 5)]:
        if action is not None:
            obs, *_ = env.step(action)
        np.testing.assert_array_equal(obs, env.unwrapped.state[keep].astype(np.float32))
    assert env.observation_space.shape == (2,)


@pytest.mark.parametrize("keep", [[3], [-1], [], [0, 0], [0.5], "0"])
def test_mask_refuses_bad_indices_naming_the_observation_size(keep):
    with pytest.raises(UserError, match=r"0\.\.2 \(the observation has 3 entries\)"):
        MaskObservation(gym.make("Pendulum-v1"), keep=keep)


@pytest.mark.parametrize("wrapper", [lambda env: MaskObservation(env, keep=[0]), PreviousAction, lambda env: History(env, k=2)])
def test_wrappers_refuse_non_vector_observations(wrapper):
    with pytest.raises(UserError, match=r"needs a 1-D Box observation \(n,\).*Discrete\(16\)"):
        wrapper(gym.make("FrozenLake-v1"))


def test_previous_action_holds_the_last_box_action_and_zeros_after_reset():
    env = PreviousAction(MaskObservation(gym.make("Pendulum-v1"), keep=[2]))
    assert env.observation_space.shape == (2,)
    np.testing.assert_array_equal(env.observation_space.low, [-8, -2])
    np.testing.assert_array_equal(env.observation_space.high, [8, 2])
    for seed in (3, 4):  # a second reset clears the action left by the first episode
        obs, _ = env.reset(seed=seed)
        assert obs[1] == 0 and obs[0] == pytest.approx(env.unwrapped.state[1], abs=1e-6)
        for action in actions(env, 10, seed):
            obs, *_ = env.step(action)
            assert obs[1] == action[0] and obs[0] == pytest.approx(env.unwrapped.state[1], abs=1e-6)
            assert env.observation_space.contains(obs)


def test_previous_action_one_hot_for_discrete_actions():
    env = PreviousAction(gym.make("CartPole-v1"))
    assert env.observation_space.shape == (6,)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[4:], [0, 0])
    for action, one_hot in ((1, [0, 1]), (0, [1, 0]), (0, [1, 0]), (1, [0, 1])):
        obs, *_ = env.step(action)
        np.testing.assert_array_equal(obs[4:], one_hot)
        np.testing.assert_array_equal(obs[:4], env.unwrapped.state.astype(np.float32))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[4:], [0, 0])


@pytest.mark.parametrize("k", [2, 3])
def test_history_is_a_zero_padded_window_oldest_first(k):
    env = History(MaskObservation(gym.make("Pendulum-v1"), keep=[0, 2]), k=k)
    assert env.observation_space.shape == (2 * k,)
    np.testing.assert_array_equal(env.observation_space.low, [-1, -8] * k)
    for seed in (5, 6):  # the second episode starts from zeros again, not from the first one's tail
        seen = []
        obs, _ = env.reset(seed=seed)
        for t, action in enumerate([None, *actions(env, k)]):
            if action is not None:
                obs, *_ = env.step(action)
            seen.append(pendulum_state(env)[[0, 2]])
            padding = [np.zeros(2)] * max(k - 1 - t, 0)
            np.testing.assert_allclose(obs, np.concatenate(padding + seen[-k:]), atol=1e-6)
            assert env.observation_space.contains(obs)


def test_history_of_one_is_the_plain_observation():
    plain, windowed = gym.make("Pendulum-v1"), History(gym.make("Pendulum-v1"), k=1)
    assert windowed.observation_space == plain.observation_space
    np.testing.assert_array_equal(windowed.reset(seed=7)[0], plain.reset(seed=7)[0])
    for action in actions(plain, 5):
        np.testing.assert_array_equal(windowed.step(action)[0], plain.step(action)[0])


@pytest.mark.parametrize("k", [0, -2, 2.5, "4", True])
def test_history_refuses_bad_k(k):
    with pytest.raises(UserError, match=r"an integer >= 1"):
        History(gym.make("Pendulum-v1"), k=k)


def by_hand(state, force):
    """One Euler step of the cartpole equations (gymnasium's CartPole: Florian 2005), written out here."""
    x, x_dot, theta, theta_dot = state
    g, m_cart, m_pole, half = 9.8, 1.0, 0.1, 0.5
    total = m_cart + m_pole
    temp = (force + m_pole * half * theta_dot**2 * math.sin(theta)) / total
    theta_acc = (g * math.sin(theta) - math.cos(theta) * temp) / (half * (4 / 3 - m_pole * math.cos(theta) ** 2 / total))
    x_acc = temp - m_pole * half * theta_acc * math.cos(theta) / total
    return np.array([x + 0.02 * x_dot, x_dot + 0.02 * x_acc, theta + 0.02 * theta_dot, theta_dot + 0.02 * theta_acc])


STATE = np.array([0.3, -0.4, 0.1, 0.5])


@pytest.mark.parametrize("a", [0.0, 1.0, -0.25])
def test_cartpole_step_follows_the_equations(a):
    env = ContinuousCartPoleEnv()
    env.reset(seed=0)
    env.state = STATE.copy()
    obs, reward, terminated, truncated, _ = env.step(np.array([a], np.float32))
    np.testing.assert_allclose(env.state, by_hand(STATE, 30 * a), rtol=1e-12)
    np.testing.assert_array_equal(obs, env.state.astype(np.float32))
    assert (reward, terminated, truncated) == (1.0, False, False)


@pytest.mark.parametrize(("a", "discrete"), [(1.0, 1), (-1.0, 0)])
def test_full_force_matches_gymnasium_cartpole_at_30_newtons(a, discrete):
    ours, theirs = ContinuousCartPoleEnv(), CartPoleEnv()
    theirs.force_mag = 30.0
    ours.reset(seed=0)
    theirs.reset(seed=0)
    ours.state, theirs.state = STATE.copy(), STATE.copy()
    for _ in range(5):
        mine, their = ours.step(np.array([a], np.float32)), theirs.step(discrete)
        np.testing.assert_allclose(mine[0], their[0], rtol=1e-6)
        assert mine[1:4] == their[1:4]
        if mine[2]:  # gymnasium's CartPole pays 0 after the failing step; ours is never stepped on
            break
    np.testing.assert_allclose(ours.state, theirs.state, rtol=1e-12)


def test_actions_beyond_one_are_clipped_to_30_newtons():
    env = ContinuousCartPoleEnv()
    env.reset(seed=0)
    env.state = STATE.copy()
    env.step(np.array([4.0], np.float32))
    np.testing.assert_allclose(env.state, by_hand(STATE, 30.0), rtol=1e-12)


@pytest.mark.parametrize(
    ("state", "terminated"),
    [
        ([2.4, 0.0, 0.0, 0.0], False),  # exactly at the limit: not beyond it
        ([2.39, 1.0, 0.0, 0.0], True),  # x = 2.41
        ([-2.4, 0.0, 0.0, 0.0], False),
        ([-2.39, -1.0, 0.0, 0.0], True),
        ([0.0, 0.0, TWELVE_DEGREES, 0.0], False),
        ([0.0, 0.0, TWELVE_DEGREES - 0.001, 0.1], True),  # θ = 12° + 0.001 rad
        ([0.0, 0.0, -TWELVE_DEGREES + 0.001, -0.1], True),
    ],
)
def test_terminated_only_beyond_the_limits(state, terminated):
    env = ContinuousCartPoleEnv()
    env.reset(seed=0)
    env.state = np.array(state)
    _, reward, done, truncated, _ = env.step(np.array([0.0], np.float32))
    assert (done, reward, truncated) == (terminated, 1.0, False)


def test_reward_one_per_step_until_the_pole_falls():
    env = gym.make(CARTPOLE)
    env.reset(seed=8)
    rewards, terminated = [], False
    while not terminated:
        _, reward, terminated, truncated, _ = env.step(np.array([1.0], np.float32))
        rewards.append(reward)
        assert not truncated
    assert rewards == [1.0] * len(rewards) and 5 < len(rewards) < 100
    state = env.unwrapped.state
    assert abs(state[0]) > 2.4 or abs(state[2]) > TWELVE_DEGREES


def test_truncated_after_1000_steps():
    env = gym.make(CARTPOLE)
    env.reset(seed=0)
    env.unwrapped.state = np.zeros(4)  # balanced and at rest: a = 0 keeps it there forever
    for step in range(1, 1001):
        _, reward, terminated, truncated, _ = env.step(np.array([0.0], np.float32))
        assert (reward, terminated, truncated) == (1.0, False, step == 1000)


def test_reset_is_seeded_and_small():
    env = gym.make(CARTPOLE)
    first, again, other = env.reset(seed=9)[0], env.reset(seed=9)[0], env.reset(seed=10)[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other) and np.all(np.abs(first) <= 0.05)


def test_rgb_array_shows_the_state():
    env = gym.make(CARTPOLE, render_mode="rgb_array")
    env.reset(seed=0)
    centre = env.render()
    env.unwrapped.state = np.array([1.5, 0.0, 0.0, 0.0])
    moved = env.render()
    env.close()
    assert centre.shape == (400, 600, 3) and centre.dtype == np.uint8
    assert not np.array_equal(centre, moved)


CONFIGS = {  # name: (observation shape, index of the History wrapper)
    "Pendulum-p": (2, 1),
    "Pendulum-v": (1, 1),
    "Pendulum-va": (2, 2),
    "CartPoleContinuous": (4, 0),
    "CartPoleContinuous-p": (2, 1),
    "CartPoleContinuous-v": (2, 1),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_through_the_factory(name):
    size, history = CONFIGS[name]
    for k, override in ((1, []), (4, [f"env.wrappers.{history}.k=4"])):
        cfg = compose_cfg([f"env={name}", "algorithm=sac", *override])
        assert cfg.env.wrappers[history]._target_ == "hydrarl.envs.pomdp.History"
        env = make_env(cfg.env)
        assert env.observation_space.shape == (size * k,) and env.action_space.shape == (1,)
        obs, _ = env.reset(seed=0)
        for action in [None, *actions(env, 3)]:
            if action is not None:
                obs, *_ = env.step(action)
            assert env.observation_space.contains(obs)
        assert env.spec.max_episode_steps == (1000 if name.startswith("CartPole") else 200)
        env.close()


@pytest.mark.parametrize("name", ["Pendulum-va", "CartPoleContinuous-v"])
def test_same_seed_same_trajectory(name):
    def trajectory(seed: int) -> np.ndarray:
        env = make_env(compose_cfg([f"env={name}", "algorithm=sac", f"env.wrappers.{CONFIGS[name][1]}.k=3"]).env)
        obs = [env.reset(seed=seed)[0]]
        obs += [env.step(action)[0] for action in actions(env, 30)]
        return np.array(obs)

    first = trajectory(11)
    np.testing.assert_array_equal(first, trajectory(11))
    assert not np.array_equal(first, trajectory(12))
