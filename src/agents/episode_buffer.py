"""Whole-episode replay for recurrent off-policy agents (RSAC/RTD3/RDPG) that train an LSTM over sequences.

``EpisodeReplayBuffer`` is an SB3 ``BaseBuffer``: ``OffPolicyAlgorithm._store_transition`` calls
``add(obs, next_obs, action, reward, done, infos)`` as for a ``ReplayBuffer``, but ``sample`` returns
:class:`EpisodeBatch`, a batch of padded sequences (whole episodes, or segments of ``segment_len`` steps).

Storage
    One ring of rows shared by all ``n_envs`` env copies (``buffer_size`` = rows in total, not per env):
    ``observations`` ``(buffer_size, obs_dim)``, ``actions`` ``(buffer_size, act_dim)``, ``rewards``
    ``(buffer_size,)``, all float32. Each observation is stored once: an episode of T transitions takes
    T + 1 consecutive rows ``start .. start+T`` holding o_0 .. o_T, with a_t and r_t in row ``start+t``
    (t < T; the last row's action and reward are zero). Memory: 4·(obs_dim + act_dim + 1) bytes a row, so
    4·(obs_dim + act_dim + 1)·(T + 1)/T bytes a stored transition (SB3's ``ReplayBuffer``:
    4·(2·obs_dim + act_dim + 3)). An episode never wraps: one that does not fit before the end of the
    ring is written from row 0 (``full`` becomes True at that first wrap) and the tail rows are left
    unused, so up to T_max + 1 rows a cycle go unused besides the one extra row per episode.
Episodes
    An episode reaches the ring only when it ends (``done``); until then it is held per env copy in python
    lists (~300 B of python overhead per step on top of the data; :meth:`drop_pending` discards them). ``done``
    with ``infos[i]["TimeLimit.truncated"]`` is a truncation, otherwise a termination. Committed
    episodes are listed, in insertion order, in an episode table (python lists of start row, length T,
    terminated); an episode whose rows are overwritten leaves the table. The table is kept in lists,
    not arrays, so that ``hydrarl.training.checkpoint`` (which trims every array attribute of
    ``buffer_size`` rows to ``[:pos]`` and pads arrays of ``pos`` rows back) never touches it.
Sampling
    Episodes are drawn with replacement with probability T / Σ T (a uniform stored transition's episode),
    with the global ``np.random`` like SB3's buffers (checkpoints save and restore it). With
    ``segment_len`` K a start is drawn uniformly in [0, T − K] (0 when T <= K) and the sequence is
    min(K, T) steps: segments never cross an episode end. L is the longest sampled sequence; shorter
    ones are padded with zeros and ``mask`` 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.vec_env import VecNormalize


class EpisodeBatch(NamedTuple):
    """B padded sequences of at most L steps, torch tensors on the buffer's device."""

    observations: th.Tensor  # (B, L+1, obs_dim) float32: o_s .. o_{s+L}; index L = next obs of step L-1
    actions: th.Tensor       # (B, L, act_dim) float32
    rewards: th.Tensor       # (B, L) float32
    terminated: th.Tensor    # (B, L) float32: 1 at the last step of a terminated (not truncated) episode
    mask: th.Tensor          # (B, L) float32: 1 for real steps, 0 for padding


class EpisodeReplayBuffer(BaseBuffer):
    """Replay buffer of whole episodes, sampled as (padded) episodes or fixed-length segments.

    :param buffer_size: capacity in stored rows (an episode of T transitions takes T + 1 rows)
    :param observation_space: flat (1-D) ``Box``
    :param action_space: ``Box``
    :param optimize_memory_usage: must be False (each observation is already stored once)
    :param segment_len: None: sample whole episodes; K >= 1: sample segments of at most K steps
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        segment_len: int | None = None,
    ):
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"EpisodeReplayBuffer stores flat (1-D) Box observations, got {observation_space}")
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"EpisodeReplayBuffer stores Box actions, got {action_space}")
        if optimize_memory_usage:
            raise ValueError("EpisodeReplayBuffer does not support optimize_memory_usage: it already stores each observation once")
        if segment_len is not None and (isinstance(segment_len, bool) or not isinstance(segment_len, int | np.integer) or segment_len < 1):
            raise ValueError(f"segment_len must be None (whole episodes) or a positive int, got {segment_len!r}")
        if buffer_size < 2:
            raise ValueError(f"buffer_size must be >= 2 rows (an episode of T steps takes T + 1), got {buffer_size}")
        super().__init__(buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.segment_len = None if segment_len is None else int(segment_len)
        self.obs_dim = int(observation_space.shape[0])
        self.observations = np.zeros((buffer_size, self.obs_dim), dtype=np.float32)
        self.actions = np.zeros((buffer_size, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros(buffer_size, dtype=np.float32)
        self._clear_episodes()
        self.drop_pending()

    # -- the episode table ------------------------------------------------------------------
    def _clear_episodes(self) -> None:
        self._ep_start: list[int] = []
        self._ep_len: list[int] = []
        self._ep_terminated: list[bool] = []
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(start rows, lengths T, terminated, cumulative lengths), each ``(n_episodes,)``; cached."""
        if self._cache is None:
            lengths = np.asarray(self._ep_len, dtype=np.int64)
            self._cache = (np.asarray(self._ep_start, dtype=np.int64), lengths,
                           np.asarray(self._ep_terminated, dtype=bool), np.cumsum(lengths))
        return self._cache

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None  # rebuilt from the lists on first use
        return state

    @property
    def n_episodes(self) -> int:
        """Number of complete episodes stored."""
        return len(self._ep_len)

    @property
    def n_transitions(self) -> int:
        """Number of transitions in the stored episodes (Σ T)."""
        return int(self._table()[3][-1]) if self._ep_len else 0

    def size(self) -> int:
        """Number of stored transitions (not rows)."""
        return self.n_transitions

    def episode_lengths(self) -> np.ndarray:
        """Lengths T of the stored episodes, insertion order, int64 ``(n_episodes,)``."""
        return np.asarray(self._ep_len, dtype=np.int64)

    def episode(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Stored episode ``index`` (insertion order): observations (T+1, obs_dim), actions (T, act_dim),
        rewards (T,), terminated; copies."""
        start, length = self._ep_start[index], self._ep_len[index]
        return (self.observations[start:start + length + 1].copy(), self.actions[start:start + length].copy(),
                self.rewards[start:start + length].copy(), self._ep_terminated[index])

    # -- storing -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty the buffer: stored and in-progress episodes."""
        super().reset()
        self._clear_episodes()
        self.drop_pending()

    def drop_pending(self) -> None:
        """Discard the in-progress episodes of all env copies (after a resume resets the env)."""
        self._pending_obs: list[list[np.ndarray]] = [[] for _ in range(self.n_envs)]
        self._pending_actions: list[list[np.ndarray]] = [[] for _ in range(self.n_envs)]
        self._pending_rewards: list[list[float]] = [[] for _ in range(self.n_envs)]

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            done: np.ndarray, infos: list[dict[str, Any]]) -> None:
        """One step of each env copy: obs/next_obs ``(n_envs, obs_dim)``, action ``(n_envs, act_dim)``,
        reward and done ``(n_envs,)``. At ``done`` next_obs is the final observation; the episode is stored."""
        obs = np.asarray(obs, dtype=np.float32).reshape(self.n_envs, self.obs_dim)
        next_obs = np.asarray(next_obs, dtype=np.float32).reshape(self.n_envs, self.obs_dim)
        action = np.asarray(action, dtype=np.float32).reshape(self.n_envs, self.action_dim)
        reward = np.asarray(reward, dtype=np.float32).reshape(self.n_envs)
        done = np.asarray(done, dtype=bool).reshape(self.n_envs)
        for steps in self._pending_actions:
            if len(steps) + 1 > self.buffer_size - 1:
                raise ValueError(f"an episode longer than {self.buffer_size - 1} transitions does not fit in "
                                 f"buffer_size={self.buffer_size} rows (T transitions take T + 1 rows); raise buffer_size")
        for i in range(self.n_envs):
            if not self._pending_obs[i]:
                self._pending_obs[i].append(obs[i].copy())
            self._pending_obs[i].append(next_obs[i].copy())
            self._pending_actions[i].append(action[i].copy())
            self._pending_rewards[i].append(float(reward[i]))
            if done[i]:
                self._commit(i, terminated=not infos[i].get("TimeLimit.truncated", False))

    def _commit(self, env_index: int, terminated: bool) -> None:
        """Write env copy ``env_index``'s finished episode to the ring, evicting the episodes it overwrites."""
        obs = np.stack(self._pending_obs[env_index])
        actions = np.stack(self._pending_actions[env_index])
        rewards = np.asarray(self._pending_rewards[env_index], dtype=np.float32)
        self._pending_obs[env_index], self._pending_actions[env_index], self._pending_rewards[env_index] = [], [], []
        start = self.pos
        if start + len(obs) > self.buffer_size:  # does not fit before the end: wrap, leave the tail unused
            start, self.full = 0, True
        end = start + len(obs)
        starts, lengths, _, _ = self._table()
        keep = (starts >= end) | (starts + lengths + 1 <= start)  # rows [s, s+T] outside [start, end)
        if not keep.all():
            self._ep_start = starts[keep].tolist()
            self._ep_len = lengths[keep].tolist()
            self._ep_terminated = [t for t, k in zip(self._ep_terminated, keep.tolist(), strict=True) if k]
        self.observations[start:end] = obs
        self.actions[start:end - 1], self.actions[end - 1] = actions, 0.0
        self.rewards[start:end - 1], self.rewards[end - 1] = rewards, 0.0
        self._ep_start.append(start)
        self._ep_len.append(len(actions))
        self._ep_terminated.append(bool(terminated))
        self._cache = None
        self.pos = end
        if self.pos == self.buffer_size:
            self.pos, self.full = 0, True

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, batch_size: int, env: VecNormalize | None = None) -> EpisodeBatch:
        """``batch_size`` sequences from episodes drawn with replacement, P(episode) ∝ T."""
        if not self._ep_len:
            raise ValueError("cannot sample: no complete episode stored yet")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        cumulative = self._table()[3]
        draws = np.random.randint(0, cumulative[-1], size=batch_size)  # a uniform stored transition ...
        return self._get_samples(np.searchsorted(cumulative, draws, side="right"), env)  # ... its episode

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> EpisodeBatch:
        """The sequences of episodes ``batch_inds`` (episode-table indices, ``(B,)``); draws segment starts."""
        starts, lengths, terminated, _ = self._table()
        ep_len = lengths[batch_inds]
        if self.segment_len is None:
            first, seq_len = np.zeros_like(ep_len), ep_len
        else:
            first = np.random.randint(0, np.maximum(ep_len - self.segment_len, 0) + 1).astype(np.int64).reshape(-1)
            seq_len = np.minimum(ep_len, self.segment_len)
        steps = int(seq_len.max())
        offsets = np.arange(steps + 1)
        obs_valid = offsets[None, :] <= seq_len[:, None]                       # (B, L+1)
        mask = offsets[None, :steps] < seq_len[:, None]                         # (B, L)
        rows = (starts[batch_inds] + first)[:, None] + np.minimum(offsets[None, :], seq_len[:, None])  # padding: clipped
        observations = self._normalize_obs(self.observations[rows], env) * obs_valid[..., None]
        actions = self.actions[rows[:, :steps]] * mask[..., None]
        rewards = self._normalize_reward(self.rewards[rows[:, :steps]], env) * mask
        ends_episode = terminated[batch_inds] & (first + seq_len == ep_len)
        done = (offsets[None, :steps] == (seq_len - 1)[:, None]) & ends_episode[:, None]
        data = (observations, actions, rewards, done, mask)
        # fresh arrays: no copy needed on the CPU (th.tensor's copy costs more than the whole gather)
        return EpisodeBatch(*(self.to_torch(np.ascontiguousarray(x, dtype=np.float32), copy=False) for x in data))
