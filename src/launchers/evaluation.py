"""Evaluation episodes with the deterministic policy."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv


def evaluate(model: BaseAlgorithm, env: VecEnv, n_episodes: int, seed: int, deterministic: bool = True) -> dict[str, float]:
    """Run ``n_episodes`` episodes from ``env.seed(seed)`` and summarise them.

    Returns ``eval/mean_reward``, ``eval/std_reward``, ``eval/min_reward``, ``eval/max_reward``
    (episode returns as the wrapped env pays them, unnormalised), ``eval/mean_ep_length`` (steps)
    and, where the env reports ``info["is_success"]``, ``eval/success_rate`` (success at the
    episode's last step, in [0, 1]). The same policy and seed give the same numbers.
    """
    n_envs = env.num_envs
    env.seed(seed)
    obs = env.reset()
    returns, lengths, successes = [], [], []
    running_return = np.zeros(n_envs)
    running_length = np.zeros(n_envs, dtype=int)
    states = None
    episode_starts = np.ones(n_envs, dtype=bool)
    while len(returns) < n_episodes:
        actions, states = model.predict(obs, state=states, episode_start=episode_starts, deterministic=deterministic)
        obs, rewards, dones, infos = env.step(actions)
        running_return += rewards
        running_length += 1
        for i in np.flatnonzero(dones):
            returns.append(running_return[i])
            lengths.append(running_length[i])
            if "is_success" in infos[i]:
                successes.append(float(infos[i]["is_success"]))
            running_return[i], running_length[i] = 0.0, 0
        episode_starts = dones
    returns = np.asarray(returns[:n_episodes], dtype=float)
    metrics = {
        "eval/mean_reward": float(returns.mean()),
        "eval/std_reward": float(returns.std()),
        "eval/min_reward": float(returns.min()),
        "eval/max_reward": float(returns.max()),
        "eval/mean_ep_length": float(np.mean(lengths[:n_episodes])),
    }
    if successes:
        metrics["eval/success_rate"] = float(np.mean(successes[:n_episodes]))
    return metrics
