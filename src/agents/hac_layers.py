"""The parts of HAC (:mod:`hydrarl.agents.hac`) that do not drive the env: time scales, subgoal bounds, one
layer's agent and how a finished layer episode enters that layer's replay buffer.

A layer is a plain SB3 off-policy agent (SAC, TD3, DDPG or TQC) built over the env's goal-dict observation
space; its action space is the env's for the bottom layer and the goal space (a subgoal, within the
subgoal bounds) for every layer above. Its replay buffer is SB3's ``DictReplayBuffer``: HAC writes the
transitions itself, hindsight goals included, so that ``layer.train()`` samples them as SB3 does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from sb3_contrib import TQC
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from hydrarl.agents.factory import GOAL_KEYS, is_goal_space
from hydrarl.errors import Incompatible, UserError

LAYER_CLASSES: dict[str, type[OffPolicyAlgorithm]] = {"sac": SAC, "td3": TD3, "ddpg": DDPG, "tqc": TQC}
STOCHASTIC = (SAC, TQC)  # layers whose policy explores by sampling; the others get Gaussian action noise
STRATEGIES = ("future", "final", "episode")
Obs = dict[str, np.ndarray]  # one env copy's goal-dict observation: observation, achieved_goal, desired_goal


def resolve_time_scales(time_scales: Sequence[int], n_layers: int, episode_steps: int | None) -> list[int]:
    """``time_scales`` (top down) with its one ``-1`` replaced by ``episode_steps // product(the others)``.

    >>> resolve_time_scales([-1, 7], 2, 50)
    [7, 7]

    A UserError for a length other than ``n_layers``, a 0 or other non-positive value besides one -1, two
    -1, or a -1 that cannot be resolved (no episode length, or one shorter than the other scales' product).
    """
    scales = list(time_scales)
    shown = f"algorithm.time_scales={scales}"
    if len(scales) != n_layers:
        raise UserError(f"{shown} has {len(scales)} entries for {n_layers} layer(s) (algorithm.layer_classes): "
                        "give one time scale per layer, top down.")
    if any(isinstance(s, bool) or not isinstance(s, int) or (s < 1 and s != -1) for s in scales):
        raise UserError(f"{shown} is not allowed: each entry is a positive integer (the most actions a layer takes "
                        "toward one goal), or -1 once (filled in from the env's episode length).")
    if scales.count(-1) > 1:
        raise UserError(f"{shown} is not allowed: at most one entry may be -1.")
    if -1 in scales:
        others = int(np.prod([s for s in scales if s != -1]))
        if episode_steps is None or episode_steps // others < 1:
            raise UserError(f"{shown}: the -1 entry is the env's episode length ({episode_steps}) divided by the product "
                            f"of the other entries ({others}), which is not a positive integer here; give every scale.")
        scales[scales.index(-1)] = episode_steps // others
    return scales


def estimate_goal_bounds(goals: np.ndarray, margin: float = 0.1) -> list[list[float]]:
    """``[low, high]`` of the goals seen (n, goal_dim), widened on each side by ``margin`` times their range
    (and by at least 1e-3, so that a goal coordinate that never varied still spans an interval)."""
    low, high = goals.min(axis=0), goals.max(axis=0)
    pad = np.maximum(margin * (high - low), 1e-3)
    return [(low - pad).tolist(), (high + pad).tolist()]


class GoalNormalizer:
    """Running mean and std of the observations and of the goals a HAC's layers read; the layers' networks see
    ``(x - mean) / std`` clipped to ``±clip``, while goals are compared (rewards, subgoal tests) in the env's units.

    Shared by every layer: ``observation`` has its own statistics; ``achieved_goal`` and ``desired_goal`` (a goal,
    a subgoal or a hindsight goal: all points of the goal space) share the goal statistics. It is what SB3 asks of
    a VecNormalize when a buffer samples (``normalize_obs``, ``normalize_reward``), so a layer's buffer holds raw
    observations and normalises each batch with the current statistics, as SB3 does with VecNormalize.
    """

    def __init__(self, obs_dim: int, goal_dim: int, clip: float = 5.0, epsilon: float = 1e-8):
        self.obs_rms, self.goal_rms = RunningMeanStd(shape=(obs_dim,)), RunningMeanStd(shape=(goal_dim,))
        self.clip, self.epsilon = clip, epsilon

    def update(self, obs: Obs) -> None:
        """Add one env observation (one env copy's, unbatched)."""
        self.obs_rms.update(np.asarray(obs["observation"], dtype=np.float64)[None])
        self.goal_rms.update(np.stack([obs["achieved_goal"], obs["desired_goal"]]).astype(np.float64))

    def _scale(self, x: np.ndarray, rms) -> np.ndarray:
        return np.clip((x - rms.mean) / np.sqrt(rms.var + self.epsilon), -self.clip, self.clip).astype(np.float32)

    def normalize_obs(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``obs`` (any leading batch shape) as the layers' networks read it."""
        return {k: self._scale(v, self.obs_rms if k == "observation" else self.goal_rms) for k, v in obs.items()}

    def normalize_reward(self, reward: np.ndarray) -> np.ndarray:
        return reward


class SpacesOnly(gym.Env):
    """An env that only has spaces: what an SB3 agent needs to build its networks and buffer (it never steps)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        raise NotImplementedError("a HAC layer's agent never steps an env of its own")

    def step(self, action):
        raise NotImplementedError("a HAC layer's agent never steps an env of its own")


def build_layer(name: str, observation_space: spaces.Dict, action_space: spaces.Box, learning_rate: float,
                device: Any, **kwargs: Any) -> OffPolicyAlgorithm:
    """The SB3 agent of one layer (``name`` in ``LAYER_CLASSES``), unseeded (HAC seeds once), logging nowhere."""
    if name not in LAYER_CLASSES:
        raise UserError(f"algorithm.layer_classes: {name!r} is not a layer agent; choose from {', '.join(LAYER_CLASSES)}.")
    layer = LAYER_CLASSES[name]("MultiInputPolicy", SpacesOnly(observation_space, action_space),
                                learning_rate=learning_rate, learning_starts=0, device=device, verbose=0, **kwargs)
    layer.set_logger(Logger(folder=None, output_formats=[]))
    return layer


@dataclass
class Transition:
    """One action of a layer: from ``obs`` (the layer's goal not yet filled in) to ``next_obs``."""

    obs: Obs
    action: np.ndarray        # as stored: for a missed subgoal with action replay, the subgoal achieved
    next_obs: Obs
    terminated: bool          # the env ended the episode (a time limit is not a termination)


def with_goal(obs: Obs, goal: np.ndarray) -> Obs:
    """``obs`` with ``desired_goal`` replaced by ``goal`` (the goal of the layer that reads it)."""
    return {**obs, "desired_goal": np.asarray(goal, dtype=obs["desired_goal"].dtype)}


def hindsight_goals(achieved: np.ndarray, t: int, n: int, strategy: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` goals for relabelling transition ``t`` of an episode whose achieved goals after each action are
    ``achieved`` (T, goal_dim): ``future`` draws from the goals achieved at t or later, ``final`` takes the
    last, ``episode`` draws from the whole episode. Returns (n, goal_dim)."""
    steps = len(achieved)
    if strategy == "future":
        index = rng.integers(t, steps, size=n)
    elif strategy == "final":
        index = np.full(n, steps - 1)
    else:
        index = rng.integers(0, steps, size=n)
    return achieved[index]


def store_episode(layer: OffPolicyAlgorithm, episode: list[Transition], goal: np.ndarray, n_sampled_goal: int,
                  strategy: str, reward_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  reached_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], rng: np.random.Generator) -> int:
    """Write a finished layer episode into ``layer.replay_buffer``: each transition with the layer's ``goal`` and
    with ``n_sampled_goal`` hindsight goals (``strategy``). Rewards are the env's ``compute_reward`` for the goal;
    a transition is terminal (its target not bootstrapped) when it reaches its goal or the env terminated.
    Returns the number of rows written."""
    achieved = np.stack([step.next_obs["achieved_goal"] for step in episode])
    rows = 0
    for t, step in enumerate(episode):
        goals = np.concatenate([np.asarray(goal)[None], hindsight_goals(achieved, t, n_sampled_goal, strategy, rng)])
        reached_now = np.repeat(achieved[t][None], len(goals), axis=0)
        rewards = reward_fn(reached_now, goals)
        dones = reached_fn(reached_now, goals) | step.terminated
        for g, reward, done in zip(goals, rewards, dones, strict=True):
            add(layer, with_goal(step.obs, g), step.action, float(reward), with_goal(step.next_obs, g), bool(done))
            rows += 1
    return rows


def add(layer: OffPolicyAlgorithm, obs: Obs, action: np.ndarray, reward: float, next_obs: Obs, done: bool) -> None:
    """One transition into ``layer.replay_buffer``; ``done``: the critic target is the reward alone (no bootstrap).
    The action is stored in the layer's [-1, 1] scale, as SB3's own collection does."""
    scaled = layer.policy.scale_action(np.asarray(action, dtype=np.float32)[None])
    layer.replay_buffer.add({k: v[None] for k, v in obs.items()}, {k: v[None] for k, v in next_obs.items()}, scaled,
                            np.array([reward], dtype=np.float32), np.array([done]), [{}])


def check_env(env: VecEnv) -> None:
    """Incompatible unless the env has goal-dict observations (and ``compute_reward``); a UserError for
    normalised observations or more than one env copy."""
    obs = env.observation_space
    if not is_goal_space(obs):
        raise Incompatible(f"HAC needs a goal-conditioned env (dict observations with {', '.join(GOAL_KEYS)}, and "
                           f"compute_reward); this env has {type(obs).__name__} observations.")
    if isinstance(env, VecNormalize) and env.norm_obs:
        raise UserError("HAC compares goals in the env's own units: build the env without observation normalisation "
                        "(env.normalize=null).")
    if env.num_envs != 1:
        raise UserError(f"HAC runs one env copy (env.n_envs=1); this env has {env.num_envs}.")


class LayerBuffers:
    """The replay buffers of a HAC's layers, top down (what its checkpoint saves as one replay buffer)."""

    def __init__(self, buffers: list) -> None:
        self.buffers = buffers


def draw_subgoals(env: gym.Env, subgoals: np.ndarray) -> None:
    """Mark ``subgoals`` (one per layer above the bottom, top first, ``(L-1, goal_dim)``) in the next frame the env
    renders, as translucent spheres (the top layer's yellow, lower layers' bluer), where the env renders with
    MuJoCo: the Fetch tasks (3-D goals in metres; Fetch draws its own goal red) and gymnasium-robotics' mazes (2-D
    goals on the floor plan, drawn just above the walls so that a subgoal in a wall stays in sight). Other envs:
    nothing is drawn.

    :param env: the unwrapped env of the copy that is recorded
    """
    maze = getattr(env, "maze", None)
    simulator = getattr(env, "point_env", None) or getattr(env, "ant_env", None) or env  # the mazes' MuJoCo env
    renderer = getattr(simulator, "mujoco_renderer", None)
    if renderer is None or subgoals.shape[-1] not in (2, 3) or (subgoals.shape[-1] == 2) != (maze is not None):
        return
    size = 0.025
    if maze is not None:
        size = 0.1 * maze.maze_size_scaling
        height = maze.maze_height * maze.maze_size_scaling + size
        subgoals = np.concatenate([subgoals, np.full((len(subgoals), 1), height)], axis=1)
    viewer = renderer._get_viewer("rgb_array")  # markers are drawn into, then cleared from, the next frame
    for level, goal in enumerate(subgoals):
        shade = level / max(len(subgoals) - 1, 1)
        viewer.add_marker(pos=goal.astype(np.float64), size=np.full(3, size),
                          rgba=np.array([1.0 - shade, 0.85, shade, 0.7]), type=2, label="")  # 2: mjGEOM_SPHERE
