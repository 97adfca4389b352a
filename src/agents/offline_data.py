"""What offline agents learn from: the episodes of a dataset (``hydrarl.datasets``), made into aligned segments.

A :class:`Segment` is a run of consecutive steps: ``observations`` has one more row than ``actions`` and
``rewards``, and row ``t + 1`` is the observation the env gave after action ``t``. Every step keeps its own
observation, action, reward and next observation whatever is cleaned or recomputed:

- **Rewards.** The dataset's, unless they are missing (not finite) or ``reward="env"``: then the training env's
  ``episode_rewards(observations, infos)`` computes them from the stored observations and infos (PenguinPi: the road
  share of each image and the odometry distance), cached per episode in ``<dataset>/.cache/rewards/<key>/``
  (dropped when the dataset is replaced).
- **Cleaning.** A step whose wheel ticks (the ``encoders`` observation after it, in counts) exceed ``max_ticks`` in
  size is a glitch of the robot's counters: the step is dropped *as a whole* and its episode split there. The
  part before it ends as truncated (not a terminal state), the part after starts at the observation that followed
  the glitch. No row shifts, so nothing is misaligned.
- **Random data** (``dataset="random"``): episodes of uniform random actions in the training env, kept in memory;
  the regression matrix trains every offline agent on them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecTransposeImage

from hydrarl.datasets.episodes import CACHE, Episode, EpisodeDataset
from hydrarl.errors import UserError

log = logging.getLogger("hydrarl")

RANDOM = "random"


@dataclass
class Segment:
    """Consecutive steps of one episode: ``observations`` (steps + 1 rows; a dict of arrays for Dict spaces),
    ``actions`` (steps rows), ``rewards`` (steps,), ``terminal``: whether the last observation is terminal."""

    observations: Any
    actions: np.ndarray
    rewards: np.ndarray
    terminal: bool

    def __len__(self) -> int:
        return len(self.actions)


def _rows(observations: Any, start: int, stop: int) -> Any:
    if isinstance(observations, dict):
        return {k: v[start:stop] for k, v in observations.items()}
    return observations[start:stop]


def split_at_glitches(episode: Episode, rewards: np.ndarray, max_ticks: float | None) -> list[Segment]:
    """The episode's steps as segments, without the steps whose ticks exceed ``max_ticks`` (see the module doc);
    ``rewards``: one per step. Without ``encoders`` observations (or ``max_ticks`` None) one segment."""
    steps = len(episode.actions)
    bad = np.zeros(steps, dtype=bool)
    if max_ticks is not None and isinstance(episode.observations, dict) and "encoders" in episode.observations:
        ticks = np.asarray(episode.observations["encoders"], dtype=float)[1:]  # row t + 1: the ticks of step t
        bad = np.abs(ticks).max(axis=1) > max_ticks
    segments, start = [], 0
    for stop in [*np.flatnonzero(bad), steps]:
        if stop > start:
            last = stop == steps and bool(episode.terminations[-1])
            segments.append(Segment(_rows(episode.observations, start, stop + 1), episode.actions[start:stop],
                                    rewards[start:stop], last))
        start = stop + 1
    return segments


def _reward_key(env: VecEnv) -> str:
    """What the env's reward depends on besides the episode (its reward settings), as a short hash."""
    settings = env.get_attr("weights")[0] if _has_attr(env, "weights") else {}
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _has_attr(env: VecEnv, name: str) -> bool:
    try:
        env.get_attr(name, indices=0)
        return True
    except AttributeError:
        return False


def env_rewards(env: VecEnv, episode: Episode, cache: Path | None) -> np.ndarray:
    """The training env's rewards for ``episode`` (its ``episode_rewards``), read from / written to ``cache``."""
    if cache is not None and cache.exists():
        return np.load(cache)
    if not _has_attr(env, "episode_rewards"):
        raise UserError("the dataset has no rewards (or reward=env asks for them again) and this env cannot compute "
                        "them from recorded episodes (it has no episode_rewards); record the dataset with rewards.")
    rewards = np.asarray(env.env_method("episode_rewards", episode.observations, episode.infos, indices=0)[0])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.npy")
        np.save(tmp, rewards)
        os.replace(tmp, cache)  # a reader sees the whole file or none
    return rewards


def _episode(data) -> Episode:
    """A Minari episode as an :class:`Episode`."""
    infos = {k: np.asarray(v) for k, v in (data.infos or {}).items() if not isinstance(v, dict)}
    return Episode(data.observations, np.asarray(data.actions), np.asarray(data.rewards, dtype=np.float64),
                   np.asarray(data.terminations), np.asarray(data.truncations), infos)


def check_dataset(path: str, env: VecEnv):
    """The dataset in folder ``path`` (a ``minari.MinariDataset``), after checking that it exists and has the
    training env's spaces: a UserError otherwise."""
    data = EpisodeDataset(Path(path)).read()
    observation_space = _raw(env).observation_space
    if (data.observation_space, data.action_space) != (observation_space, env.action_space):
        raise UserError(f"dataset={path} holds observations {data.observation_space} and actions {data.action_space}; "
                        f"this env has {observation_space} and {env.action_space}: train in the env the dataset was "
                        "recorded in (the same env settings).")
    if data.total_steps == 0:
        raise UserError(f"dataset={path} holds no steps; record episodes with experiment/collect.py first.")
    return data


def dataset_segments(path: str, env: VecEnv, reward: str, max_ticks: float | None) -> tuple[list[Segment], dict]:
    """The segments of the dataset in folder ``path`` (see the module doc) and a summary (episodes, steps, dropped
    steps, where the rewards came from, the dataset's version). Its spaces must be the training env's."""
    data = check_dataset(path, env)
    cache_dir = Path(path) / CACHE / "rewards" / _reward_key(env)
    segments, summary = [], {"episodes": 0, "steps": 0, "dropped_steps": 0, "recomputed_rewards": 0}
    for data_episode in data.iterate_episodes():
        episode = _episode(data_episode)
        rewards = episode.rewards
        if reward == "env" or not np.all(np.isfinite(rewards)):
            rewards = env_rewards(env, episode, cache_dir / f"{data_episode.id}.npy")
            summary["recomputed_rewards"] += 1
        parts = split_at_glitches(episode, rewards, max_ticks)
        segments += parts
        summary["episodes"] += 1
        summary["steps"] += len(episode.actions)
        summary["dropped_steps"] += len(episode.actions) - sum(map(len, parts))
    summary["version"] = os.path.basename(os.readlink(Path(path) / "data"))
    return segments, summary


def _raw(env: VecEnv) -> VecEnv:
    """``env`` without SB3's channel-first transpose of images: the env's own observations, as datasets hold them."""
    return env.venv if isinstance(env, VecTransposeImage) else env


def random_segments(env: VecEnv, episodes: int, seed: int) -> list[Segment]:
    """``episodes`` episodes of uniform random actions in ``env`` (its own observations), as segments."""
    raw = _raw(env)
    space = env.action_space
    space.seed(seed)
    raw.seed(seed)
    segments = []
    obs = raw.reset()
    for _ in range(episodes):
        rows, actions, rewards, done, terminal = [obs], [], [], False, False
        while not done:
            action = np.stack([space.sample() for _ in range(raw.num_envs)])
            obs, reward, dones, infos = raw.step(action)
            done = bool(dones[0])
            actions.append(action[0])
            rewards.append(float(reward[0]))
            if done:
                terminal = not infos[0].get("TimeLimit.truncated", False)
                rows.append(infos[0]["terminal_observation"][None] if not isinstance(obs, dict) else
                            {k: v[None] for k, v in infos[0]["terminal_observation"].items()})
            else:
                rows.append(obs)
        observations = ({k: np.concatenate([r[k][:1] for r in rows]) for k in rows[0]} if isinstance(obs, dict)
                        else np.concatenate([r[:1] for r in rows]))
        episode = Episode(observations, np.asarray(actions), np.asarray(rewards), np.array([terminal]), np.array([not terminal]))
        segments += split_at_glitches(episode, episode.rewards, None)
    return segments
