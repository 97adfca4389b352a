"""Evaluation episodes with the deterministic policy.

:func:`run_episodes` plays the episodes and keeps each one's return, length and success;
:func:`summarize` turns them into the ``eval/*`` metrics; :func:`evaluate` (what the Trainer
calls) does both.

Envs may report their own per-episode numbers: a dict ``info["episode_metrics"]`` (name -> float, the
value so far, e.g. Cassie's mean forward speed) at every step; the value at an episode's last step is
that episode's, and :func:`summarize` logs the mean over episodes as ``eval/<name>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize


@dataclass
class Episodes:
    """Per-episode outcomes, in the order the episodes ended."""

    returns: list[float] = field(default_factory=list)      # unnormalised, as the wrapped env pays them
    lengths: list[int] = field(default_factory=list)        # env steps
    successes: list[float] = field(default_factory=list)    # info["is_success"] at the last step; empty if never reported
    extras: dict[str, list[float]] = field(default_factory=dict)  # info["episode_metrics"] at the last step, per name


def run_episodes(
    model: BaseAlgorithm,
    env: VecEnv,
    n_episodes: int,
    seed: int,
    deterministic: bool = True,
    on_episode: Callable[[Episodes], None] | None = None,
    on_frame: Callable[[], None] | None = None,
    on_step: Callable[[np.ndarray, list[dict]], None] | None = None,
    on_action: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Episodes:
    """Play ``n_episodes`` episodes: ``env.seed(seed)``, one reset, then episodes back to back (each
    env copy resets itself when its episode ends, continuing its own RNG). With several env copies
    the first ``n_episodes`` episodes to end are kept. ``on_episode`` is called after each kept
    episode, ``on_frame`` after the reset and after every step (to grab rendered frames), ``on_step``
    after every step with that step's actions (one row per env copy) and infos (e.g. per-step physics
    diagnostics the env reports), ``on_action`` before every step with the observations the policy saw and its
    actions.
    """
    n_envs = env.num_envs
    env.seed(seed)
    obs = env.reset()
    if on_frame is not None:
        on_frame()
    episodes = Episodes()
    running_return = np.zeros(n_envs)
    running_length = np.zeros(n_envs, dtype=int)
    states = None
    episode_starts = np.ones(n_envs, dtype=bool)
    while len(episodes.returns) < n_episodes:
        actions, states = model.predict(obs, state=states, episode_start=episode_starts, deterministic=deterministic)
        if on_action is not None:
            on_action(obs, actions)
        obs, rewards, dones, infos = env.step(actions)
        if on_frame is not None:
            on_frame()
        if on_step is not None:
            on_step(actions, infos)
        running_return += rewards
        running_length += 1
        for i in np.flatnonzero(dones):
            if len(episodes.returns) < n_episodes:
                episodes.returns.append(float(running_return[i]))
                episodes.lengths.append(int(running_length[i]))
                if "is_success" in infos[i]:
                    episodes.successes.append(float(infos[i]["is_success"]))
                for name, value in infos[i].get("episode_metrics", {}).items():
                    episodes.extras.setdefault(name, []).append(float(value))
                if on_episode is not None:
                    on_episode(episodes)
            running_return[i], running_length[i] = 0.0, 0
        episode_starts = dones
    return episodes


def summarize(episodes: Episodes) -> dict[str, float]:
    """``eval/mean_reward``, ``eval/std_reward`` (population std), ``eval/min_reward``,
    ``eval/max_reward``, ``eval/mean_ep_length`` and, where reported, ``eval/success_rate`` and the
    env's ``eval/<episode metric>`` means."""
    returns = np.asarray(episodes.returns, dtype=float)
    metrics = {
        "eval/mean_reward": float(returns.mean()),
        "eval/std_reward": float(returns.std()),
        "eval/min_reward": float(returns.min()),
        "eval/max_reward": float(returns.max()),
        "eval/mean_ep_length": float(np.mean(episodes.lengths)),
    }
    if episodes.successes:
        metrics["eval/success_rate"] = float(np.mean(episodes.successes))
    for name, values in episodes.extras.items():
        metrics[f"eval/{name}"] = float(np.mean(values))
    return metrics


def evaluate(model: BaseAlgorithm, env: VecEnv, n_episodes: int, seed: int, deterministic: bool = True) -> dict[str, float]:
    """Run ``n_episodes`` episodes from ``env.seed(seed)`` and summarise them.

    Returns ``eval/mean_reward``, ``eval/std_reward``, ``eval/min_reward``, ``eval/max_reward``
    (episode returns as the wrapped env pays them, unnormalised), ``eval/mean_ep_length`` (steps)
    and, where the env reports ``info["is_success"]``, ``eval/success_rate`` (success at the
    episode's last step, in [0, 1]); where the env has left-right mirror maps and the policy is deterministic,
    ``eval/mirror_gap_rms`` (:class:`MirrorGap`). The same policy and seed give the same numbers.
    """
    gap = MirrorGap(env) if deterministic and env.has_attr("mirror_obs") and env.has_attr("mirror_action") else None
    metrics = summarize(run_episodes(model, env, n_episodes, seed, deterministic, on_action=gap and gap.record))
    if gap is not None:
        metrics["eval/mirror_gap_rms"] = gap.rms(model)
    return metrics


class MirrorGap:
    """How far a deterministic policy is from its own mirror image on the states it visits: the root mean square
    over states s of ‖a(s) − M_a a(M_s s)‖ (action units), with M_s and M_a the env's ``mirror_obs`` and
    ``mirror_action``; 0 for a perfectly symmetric policy. Mirroring is done on raw observations (those of
    ``VecNormalize.get_original_obs``), then normalised as the policy expects."""

    def __init__(self, env: VecEnv) -> None:
        self.env = env
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def record(self, obs: np.ndarray, actions: np.ndarray) -> None:
        raw = self.env.get_original_obs() if isinstance(self.env, VecNormalize) else obs
        self.states.append(np.array(raw, dtype=np.float64))
        self.actions.append(np.array(actions, dtype=np.float64))

    def rms(self, model: BaseAlgorithm) -> float:
        states, actions = np.concatenate(self.states), np.concatenate(self.actions)
        mirrored = self.env.env_method("mirror_obs", states, indices=[0])[0]
        if isinstance(self.env, VecNormalize):
            mirrored = self.env.normalize_obs(mirrored)
        mirrored_actions, _ = model.predict(mirrored.astype(np.float32), deterministic=True)
        back = self.env.env_method("mirror_action", mirrored_actions, indices=[0])[0]
        return float(np.sqrt(np.mean(np.sum((actions - back) ** 2, axis=-1))))
