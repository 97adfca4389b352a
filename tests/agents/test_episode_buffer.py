"""The episode replay of the recurrent agents: storage (each observation once, interleaved env copies,
truncation vs termination, in-progress episodes), the ring (wrap-around, eviction), sampling (whole
episodes, segments that never cross an episode end, P ∝ length, VecNormalize), checkpoint round trips,
and the SB3 ``_store_transition`` path of a real off-policy algorithm."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from hydrarl.agents.episode_buffer import EpisodeReplayBuffer
from hydrarl.training.checkpoint import _trimmed, _untrim

OBS = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)  # [episode id, t, env copy]
ACT = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)


def make(buffer_size=1000, n_envs=1, segment_len=None):
    return EpisodeReplayBuffer(buffer_size, OBS, ACT, device="cpu", n_envs=n_envs, segment_len=segment_len)


def expected(ep_id, length, env=0):
    """Observations, actions, rewards of episode ``ep_id`` as ``feed`` produces them."""
    t = np.arange(length + 1, dtype=np.float32)
    obs = np.stack([np.full_like(t, ep_id), t, np.full_like(t, env)], axis=1)
    actions = np.stack([np.full(length, ep_id + 0.5), t[:-1] * 0.1], axis=1).astype(np.float32)
    return obs, actions, (ep_id * 100 + t[:-1]).astype(np.float32)


def feed(buffer, schedules, n_steps):
    """Step ``len(schedules)`` env copies together for ``n_steps`` steps; copy i plays the episodes
    ``schedules[i]`` = [(id, T, truncated), ...] in order, then an endless one (id −1−i). Observations are
    [id, t, i], actions [id + 0.5, 0.1 t], rewards 100 id + t; at ``done`` next_obs is the final one."""
    n = len(schedules)
    index, t = [0] * n, [0] * n
    for _ in range(n_steps):
        current = [schedules[i][index[i]] if index[i] < len(schedules[i]) else (-1 - i, 10**9, False) for i in range(n)]
        obs = np.array([[c[0], t[i], i] for i, c in enumerate(current)], dtype=np.float32)
        next_obs = obs + np.array([0, 1, 0], dtype=np.float32)
        action = np.array([[c[0] + 0.5, 0.1 * t[i]] for i, c in enumerate(current)], dtype=np.float32)
        reward = np.array([c[0] * 100 + t[i] for i, c in enumerate(current)], dtype=np.float32)
        done = np.array([t[i] + 1 == c[1] for i, c in enumerate(current)])
        infos = [{"TimeLimit.truncated": True} if d and c[2] else {} for d, c in zip(done, current, strict=True)]
        buffer.add(obs, next_obs, action, reward, done, infos)
        for i in range(n):
            t[i] += 1
            if done[i]:
                index[i], t[i] = index[i] + 1, 0


def assert_episode(buffer, k, ep_id, length, terminated, env=0):
    obs, actions, rewards, term = buffer.episode(k)
    exp_obs, exp_actions, exp_rewards = expected(ep_id, length, env)
    np.testing.assert_array_equal(obs, exp_obs)
    np.testing.assert_allclose(actions, exp_actions, rtol=1e-6)
    np.testing.assert_array_equal(rewards, exp_rewards)
    assert term is terminated


def as_numpy(batch):
    return [x.numpy() for x in batch]


def stored_ids(buffer):
    return [int(buffer.episode(k)[0][0, 0]) for k in range(buffer.n_episodes)]


# -- storing -------------------------------------------------------------------------------------------


def test_interleaved_episodes_of_two_env_copies_are_stored_exactly():
    buffer = make(n_envs=2)
    schedules = [[(1, 3, False), (2, 5, True), (3, 2, False)], [(11, 6, True), (12, 1, False), (13, 4, False)]]
    feed(buffer, schedules, 12)  # both copies then have an episode in progress (2 and 1 steps)
    # commit order: step 3: ep 1; step 6: ep 11; step 7: ep 12; step 8: ep 2; step 10: ep 3; step 11: ep 13
    assert stored_ids(buffer) == [1, 11, 12, 2, 3, 13]
    lengths = {1: 3, 2: 5, 3: 2, 11: 6, 12: 1, 13: 4}
    truncated = {2, 11}
    for k, ep_id in enumerate(stored_ids(buffer)):
        assert_episode(buffer, k, ep_id, lengths[ep_id], ep_id not in truncated, env=int(ep_id > 10))
    np.testing.assert_array_equal(buffer.episode_lengths(), [3, 6, 1, 5, 2, 4])
    assert buffer.n_episodes == 6 and buffer.n_transitions == buffer.size() == 21
    assert buffer.pos == 21 + 6 and not buffer.full  # each observation in one row: T + 1 rows an episode


def test_drop_pending_and_reset():
    buffer = make(n_envs=2)
    feed(buffer, [[(5, 10, False)], [(6, 10, False)]], 4)
    buffer.drop_pending()
    feed(buffer, [[(1, 2, False)], [(2, 3, True)]], 3)
    assert stored_ids(buffer) == [1, 2]  # nothing of the dropped steps
    assert_episode(buffer, 0, 1, 2, True)
    assert_episode(buffer, 1, 2, 3, False, env=1)
    buffer.reset()
    assert buffer.n_episodes == buffer.n_transitions == buffer.pos == 0 and not buffer.full
    feed(buffer, [[(7, 2, False)], [(8, 5, False)]], 2)  # in-progress steps did not survive reset either
    assert stored_ids(buffer) == [7]


def test_an_episode_too_long_for_the_buffer_is_refused():
    buffer = make(buffer_size=10)
    feed(buffer, [[(1, 9, False)]], 9)  # 9 transitions = 10 rows: fits
    assert buffer.episode_lengths().tolist() == [9]
    with pytest.raises(ValueError, match="buffer_size=10"):
        feed(buffer, [[(2, 10, False)]], 10)


@pytest.mark.parametrize("segment_len", [0, -3, 2.5, True, "8"])
def test_bad_segment_len(segment_len):
    with pytest.raises(ValueError, match="segment_len"):
        make(segment_len=segment_len)


@pytest.mark.parametrize("obs_space, act_space", [
    (spaces.Discrete(4), ACT),
    (spaces.Box(0, 1, shape=(4, 4)), ACT),
    (spaces.Dict({"x": OBS}), ACT),
    (OBS, spaces.Discrete(3)),
    (OBS, spaces.MultiDiscrete([2, 2])),
])
def test_only_flat_box_observations_and_box_actions(obs_space, act_space):
    with pytest.raises(ValueError, match="Box"):
        EpisodeReplayBuffer(100, obs_space, act_space)


def test_optimize_memory_usage_and_empty_sampling_are_refused():
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        EpisodeReplayBuffer(100, OBS, ACT, optimize_memory_usage=True)
    buffer = make()
    feed(buffer, [[(1, 5, False)]], 3)  # only an episode in progress
    with pytest.raises(ValueError, match="no complete episode stored yet"):
        buffer.sample(4)


# -- the ring ------------------------------------------------------------------------------------------


def test_wrap_around_evicts_overwritten_episodes():
    buffer = make(buffer_size=30)  # episodes of 7 transitions take 8 rows: 3 fit, rows 24..29 unused
    for k in range(1, 11):
        feed(buffer, [[(k, 7, False)]], 7)
        assert buffer.full == (k >= 4)
        assert stored_ids(buffer) == list(range(max(1, k - 2), k + 1))
        for j, ep_id in enumerate(stored_ids(buffer)):
            assert_episode(buffer, j, ep_id, 7, True)


def test_wrap_around_with_unequal_lengths_keeps_episodes_in_the_unused_tail():
    buffer = make(buffer_size=30)
    for ep_id, length in [(1, 3), (2, 19), (3, 4)]:  # rows 0-3, 4-23, 24-28
        feed(buffer, [[(ep_id, length, False)]], length)
    assert buffer.pos == 29 and not buffer.full
    feed(buffer, [[(4, 20, False)]], 20)  # 21 rows do not fit in 29..29: rows 0-20, evicts 1 and 2
    assert buffer.full and buffer.pos == 21 and stored_ids(buffer) == [3, 4]
    feed(buffer, [[(5, 10, False)]], 10)  # rows 0-10: evicts 4 (newer than 3, which is left alone)
    assert buffer.pos == 11 and stored_ids(buffer) == [3, 5]
    assert_episode(buffer, 0, 3, 4, True)
    assert_episode(buffer, 1, 5, 10, True)
    assert buffer.n_transitions == 14
    obs, *_, mask = as_numpy(buffer._get_samples(np.array([0, 1])))  # 3's padding would run past the last row
    np.testing.assert_array_equal(mask.sum(axis=1), [4, 10])
    np.testing.assert_array_equal(obs[0, :5], expected(3, 4)[0])
    assert not obs[0, 5:].any()


def test_an_exact_fit_wraps_pos_to_zero():
    buffer = make(buffer_size=30)
    for k in range(1, 4):
        feed(buffer, [[(k, 9, False)]], 9)
    assert buffer.pos == 0 and buffer.full and stored_ids(buffer) == [1, 2, 3]
    feed(buffer, [[(4, 2, False)]], 2)
    assert buffer.pos == 3 and stored_ids(buffer) == [2, 3, 4]


# -- sampling ------------------------------------------------------------------------------------------


def fill_random(buffer, n_episodes, max_len, seed=0, n_envs=1):
    rng = np.random.default_rng(seed)
    ids = iter(range(1, 10**6))
    schedules = [[(next(ids), int(rng.integers(1, max_len + 1)), bool(rng.random() < 0.5)) for _ in range(n_episodes)]
                 for _ in range(n_envs)]
    feed(buffer, schedules, max(sum(s[1] for s in schedule) for schedule in schedules))
    return {ep_id: (length, not trunc) for schedule in schedules for ep_id, length, trunc in schedule}


def test_segments_never_cross_episode_ends():
    buffer = make(buffer_size=3000, n_envs=2, segment_len=8)
    episodes = fill_random(buffer, 60, 25, n_envs=2)
    np.random.seed(0)
    for _ in range(40):
        obs, actions, rewards, terminated, mask = as_numpy(buffer.sample(64))
        steps = mask.sum(axis=1).astype(int)
        assert obs.shape[1] == steps.max() + 1 and mask.shape[1] == steps.max()
        for b, n in enumerate(steps):
            ep_id, first = int(obs[b, 0, 0]), int(obs[b, 0, 1])
            length, is_terminated = episodes[ep_id]
            assert n == min(8, length)
            np.testing.assert_array_equal(obs[b, : n + 1, 0], ep_id)  # next obs (index n) included
            np.testing.assert_array_equal(obs[b, : n + 1, 1], np.arange(first, first + n + 1))
            assert first + n <= length
            np.testing.assert_allclose(actions[b, :n, 0], ep_id + 0.5)
            np.testing.assert_array_equal(rewards[b, :n], ep_id * 100 + np.arange(first, first + n))
            np.testing.assert_array_equal(mask[b, :n], 1.0)
            ends = is_terminated and first + n == length
            np.testing.assert_array_equal(terminated[b], np.eye(1, mask.shape[1], n - 1)[0] * ends)
            assert not obs[b, n + 1 :].any() and not actions[b, n:].any() and not rewards[b, n:].any()
            assert not mask[b, n:].any()


def test_whole_episodes_trim_to_the_longest_sampled_and_mask_the_rest():
    buffer = make()
    feed(buffer, [[(1, 3, False), (2, 5, True), (3, 9, False)]], 17)
    np.random.seed(1)
    widths = set()
    for _ in range(50):
        obs, actions, rewards, terminated, mask = as_numpy(buffer.sample(2))
        steps = mask.sum(axis=1).astype(int)
        widths.add(mask.shape[1])
        assert mask.shape[1] == steps.max() and obs.shape == (2, steps.max() + 1, 3) and actions.shape == (2, steps.max(), 2)
        for b, n in enumerate(steps):
            ep_id = int(obs[b, 0, 0])
            exp_obs, exp_actions, exp_rewards = expected(ep_id, {1: 3, 2: 5, 3: 9}[ep_id])
            assert n == len(exp_rewards)
            np.testing.assert_array_equal(obs[b, : n + 1], exp_obs)
            np.testing.assert_allclose(actions[b, :n], exp_actions, rtol=1e-6)
            np.testing.assert_array_equal(rewards[b, :n], exp_rewards)
            assert not obs[b, n + 1 :].any() and not actions[b, n:].any() and not mask[b, n:].any()
    assert widths == {3, 5, 9}


@pytest.mark.parametrize("short, long", [(10, 40), (1, 3)])
def test_episodes_are_drawn_in_proportion_to_their_length(short, long):
    buffer = make()
    feed(buffer, [[(1, short, False), (2, long, False)]], short + long)
    np.random.seed(0)
    *_, mask = as_numpy(buffer.sample(4000))
    share_long = (mask.sum(axis=1) == long).mean()
    assert share_long == pytest.approx(long / (short + long), abs=0.03)


def test_terminated_marks_only_the_last_step_of_terminated_episodes():
    buffer = make(segment_len=2)
    feed(buffer, [[(1, 4, False), (2, 4, True)]], 8)  # 1 terminated, 2 truncated
    buffer.segment_len = None
    *_, terminated, _ = as_numpy(buffer._get_samples(np.array([0, 1])))
    np.testing.assert_array_equal(terminated, [[0, 0, 0, 1], [0, 0, 0, 0]])
    buffer.segment_len = 2
    np.random.seed(0)
    obs, _, _, terminated, _ = as_numpy(buffer.sample(500))
    last_segment = obs[:, 0, 1] == 2  # steps 2, 3: contain the last step
    np.testing.assert_array_equal(terminated[:, 1], last_segment & (obs[:, 0, 0] == 1))
    assert not terminated[:, 0].any() and last_segment.any() and not last_segment.all()


def test_vecnormalize_normalises_observations_and_rewards_and_padding_stays_zero():
    buffer = make()
    feed(buffer, [[(1, 3, False), (2, 6, False)]], 9)
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), clip_obs=1e6, clip_reward=1e6)
    venv.obs_rms.mean, venv.obs_rms.var = np.array([1.0, 2.0, -1.0]), np.array([4.0, 0.25, 9.0])
    venv.ret_rms.var = np.array(16.0)
    np.random.seed(3)
    raw = as_numpy(buffer.sample(16))
    np.random.seed(3)
    normalised = as_numpy(buffer.sample(16, env=venv))
    venv.close()
    obs_mask = np.concatenate([np.ones((16, 1)), raw[4]], axis=1)  # observation j valid iff j <= n
    np.testing.assert_allclose(normalised[0], venv.normalize_obs(raw[0]) * obs_mask[..., None], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(normalised[2], raw[2] / 4.0, rtol=1e-4)
    for k in (1, 3, 4):  # actions, terminated, mask: untouched
        np.testing.assert_array_equal(normalised[k], raw[k])


# -- checkpoints ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_episodes", [0, 5, 40])  # empty, partly filled, full (wrapped)
def test_checkpoint_round_trip(tmp_path, n_episodes):
    buffer = make(buffer_size=200, n_envs=2, segment_len=6)
    fill_random(buffer, n_episodes // 2, 12, n_envs=2, seed=n_episodes)
    feed(buffer, [[], []], 3)  # an episode in progress in each copy
    assert buffer.full == (n_episodes == 40)
    trimmed = _trimmed(buffer)
    if not buffer.full:
        assert len(trimmed.observations) == len(trimmed.actions) == len(trimmed.rewards) == buffer.pos
    save_to_pkl(tmp_path / "buffer.pkl", trimmed)
    loaded = _untrim(load_from_pkl(tmp_path / "buffer.pkl"))
    for name in ("observations", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(buffer, name))
    assert (loaded.pos, loaded.full, loaded.buffer_size) == (buffer.pos, buffer.full, buffer.buffer_size)
    np.testing.assert_array_equal(loaded.episode_lengths(), buffer.episode_lengths())
    assert loaded.n_episodes == buffer.n_episodes and loaded.n_transitions == buffer.n_transitions
    for k in range(buffer.n_episodes):
        for a, b in zip(loaded.episode(k), buffer.episode(k), strict=True):
            np.testing.assert_array_equal(a, b)
    if n_episodes:
        np.random.seed(0)
        before = as_numpy(buffer.sample(32))
        np.random.seed(0)
        after = as_numpy(loaded.sample(32))
        for a, b in zip(after, before, strict=True):
            np.testing.assert_array_equal(a, b)
    feed(loaded, [[(999, 2, False)], []], 2)  # the in-progress episodes travelled too: 3 steps of -1, then 2 more
    assert loaded.episode_lengths()[-1] == 5 and stored_ids(loaded)[-1] == -1


# -- inside SB3 ----------------------------------------------------------------------------------------


def test_sb3_store_transition_stores_consistent_pendulum_episodes():
    """SAC collecting (no training) with two Pendulum copies cut at 20 steps: every stored transition,
    the final one included (the terminal observation, not the reset one), follows the pendulum dynamics."""
    venv = DummyVecEnv([lambda: gym.make("Pendulum-v1", max_episode_steps=20)] * 2)
    model = SAC("MlpPolicy", venv, replay_buffer_class=EpisodeReplayBuffer, learning_starts=10**6,
                buffer_size=500, seed=0, device="cpu")
    model.learn(total_timesteps=100)  # 50 steps per copy: 2 episodes each, 10 steps in progress
    buffer = model.replay_buffer
    assert isinstance(buffer, EpisodeReplayBuffer)
    assert buffer.episode_lengths().tolist() == [20] * 4 and buffer.n_transitions == 80
    for k in range(4):
        obs, actions, _, terminated = buffer.episode(k)
        assert not terminated  # time limit: truncated
        sin_theta, thetadot = obs[:-1, 1], obs[:-1, 2]
        u = 2.0 * actions[:, 0]  # SAC stores actions scaled to [-1, 1]; Pendulum's torque is in [-2, 2]
        predicted = np.clip(thetadot + (15.0 * sin_theta + 3.0 * u) * 0.05, -8.0, 8.0)
        np.testing.assert_allclose(obs[1:, 2], predicted, atol=1e-4)
    venv.close()
