"""``hydrarl.agents.her_buffer.HerReplayBuffer`` on the real FetchReach: made at 10⁶ slots in a fraction of SB3's
time, and, fed the same episodes, it samples transitions and relabels goals and rewards with the distribution of SB3's
buffer, in one pass over the batch."""

from __future__ import annotations

import pickle
import time

import gymnasium as gym
import gymnasium_robotics  # noqa: F401  (registers the Fetch envs)
import numpy as np
import pytest
from scipy.stats import chi2_contingency
from stable_baselines3 import HerReplayBuffer as Sb3HerReplayBuffer
from stable_baselines3.common.vec_env import DummyVecEnv

from hydrarl.agents.her_buffer import HerReplayBuffer


def _fetch_reach() -> DummyVecEnv:
    return DummyVecEnv([lambda: gym.make("FetchReach-v4", max_episode_steps=20)])


def _fill(buffer, env: DummyVecEnv, steps: int, seed: int) -> None:
    env.seed(seed)
    env.action_space.seed(seed)
    obs = env.reset()
    for _ in range(steps):
        action = np.array([env.action_space.sample()])
        next_obs, reward, done, infos = env.step(action)
        real_next = {k: np.array(v) for k, v in next_obs.items()}
        if done[0]:  # the vec env has reset: the transition's own next observation is in the info
            real_next = {k: np.array([v]) for k, v in infos[0]["terminal_observation"].items()}
        buffer.add(obs, real_next, action, reward, done, infos)
        obs = next_obs


def _draws(buffer, batches: int, seed: int) -> dict[str, np.ndarray]:
    """Per sampled row: the transition (found by its action, each one unique), whether its goal was relabelled, the
    goal's step in the episode minus the transition's (relabelled rows), and its reward."""
    actions = buffer.actions[: buffer.pos, 0]
    achieved = buffer.next_observations["achieved_goal"][: buffer.pos, 0]
    np.random.seed(seed)
    rows = {"transition": [], "relabelled": [], "offset": [], "reward": [], "recomputed": []}
    for _ in range(batches):
        batch = buffer.sample(64, env=None)
        index = [int(np.flatnonzero((actions == a).all(axis=1))[0]) for a in batch.actions.numpy()]
        goals = batch.observations["desired_goal"].numpy()
        own = buffer.observations["desired_goal"][index, 0]
        relabelled = ~np.isclose(goals, own).all(axis=1)
        goal_index = [int(np.flatnonzero(np.isclose(achieved, g).all(axis=1))[0]) if r else i
                      for g, r, i in zip(goals, relabelled, index, strict=True)]
        rows["transition"] += index
        rows["relabelled"] += list(relabelled)
        rows["offset"] += [g - i for g, i, r in zip(goal_index, index, relabelled, strict=True) if r]
        rows["reward"] += list(batch.rewards.numpy()[:, 0])
        rows["recomputed"] += list(buffer.env.env_method("compute_reward", batch.next_observations["achieved_goal"].numpy(),
                                                         goals, [{}] * 64, indices=[0])[0])
    return {key: np.array(value) for key, value in rows.items()}


def _same_distribution(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of a chi-squared test that the integer samples ``a`` and ``b`` come from one distribution."""
    values = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    return chi2_contingency(table).pvalue


def test_sampling_and_relabelling_follow_sb3s_distribution():
    """Fed the same episodes, our one-pass sampler and SB3's draw the same transitions, relabel the same share of them
    with goals from the same steps ahead, and every reward follows its goal (chi-squared tests, each sampler with its own fixed seed). The same
    test tells SB3's 'final' goals from 'future' ones, so it can see a difference."""
    env = _fetch_reach()
    kwargs = dict(buffer_size=500, observation_space=env.observation_space, action_space=env.action_space, env=env,
                  device="cpu", n_sampled_goal=4)
    ours, theirs, final = (HerReplayBuffer(**kwargs, goal_selection_strategy="future"),
                           Sb3HerReplayBuffer(**kwargs, goal_selection_strategy="future"),
                           Sb3HerReplayBuffer(**kwargs, goal_selection_strategy="final"))
    for buffer in (ours, theirs, final):
        _fill(buffer, env, 110, seed=3)  # 5 whole episodes of 20 steps and one in progress
    # seeds of their own: our sampler draws its random numbers as SB3's does, so one seed would give the same batches
    mine, sb3, sb3_final = (_draws(b, batches=150, seed=seed) for b, seed in ((ours, 7), (theirs, 8), (final, 9)))
    assert mine["transition"].max() < 100 and sb3["transition"].max() < 100  # never the unfinished episode
    assert _same_distribution(mine["transition"], sb3["transition"]) > 0.001
    assert mine["relabelled"].mean() == pytest.approx(int(0.8 * 64) / 64, abs=0.01)  # her_ratio 1 - 1/(4 + 1)
    assert abs(mine["relabelled"].mean() - sb3["relabelled"].mean()) < 0.01
    assert mine["offset"].min() >= 0 and _same_distribution(mine["offset"], sb3["offset"]) > 0.001
    assert _same_distribution(mine["offset"], sb3_final["offset"]) < 1e-6
    np.testing.assert_array_equal(mine["reward"], mine["recomputed"])
    assert 0.05 < (mine["reward"] == 0).mean() < 0.95  # relabelled goals reached and missed
    env.close()


def test_the_sampleable_transitions_follow_the_episodes_through_overwriting_and_pickling():
    """A buffer smaller than the run: an old episode leaves sampling when overwriting reaches it, and a pickled
    buffer (a checkpoint) lists its transitions again."""
    env = _fetch_reach()
    buffer = HerReplayBuffer(50, env.observation_space, env.action_space, env, device="cpu")
    _fill(buffer, env, 45, seed=1)  # episodes at 0-19 and 20-39, the third in progress at 40-44
    np.random.seed(0)
    buffer.sample(8)
    assert set(buffer._sampleable) == set(range(40))
    _fill(buffer, env, 10, seed=2)  # overwrites slots 45-49 and 0-4: the first episode is no longer whole
    buffer.sample(8)
    assert set(buffer._sampleable) == set(range(20, 40))
    again = pickle.loads(pickle.dumps(buffer))
    assert again._sampleable is None
    again.set_env(env)
    again.sample(8)
    assert set(again._sampleable) == set(range(20, 40))
    env.close()


def test_a_million_slots_are_made_without_a_million_info_dicts():
    env = _fetch_reach()
    began = time.perf_counter()
    buffer = HerReplayBuffer(1_000_000, env.observation_space, env.action_space, env, device="cpu")
    made = time.perf_counter() - began
    assert made < 0.3, f"{made:.2f} s to make the buffer (SB3's own takes about a second)"  # SB3's: ~1 s on one core here
    assert buffer.infos.shape == (1_000_000, 1) and buffer.infos[0, 0] is None
    env.close()
