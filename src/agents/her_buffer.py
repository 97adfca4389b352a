"""``HerReplayBuffer``: SB3's Hindsight Experience Replay buffer, built without its per-slot info dicts.

SB3's buffer fills an array of ``buffer_size × n_envs`` empty dicts when it is made, whether or not it ever stores
infos. It stores them only with ``copy_info_dict=True`` (for envs whose reward needs the info), and our configs
leave that off. At the Fetch configs' 10⁶ slots, those dicts cost about a second of every run's start-up, before
its first env step, and are pickled again with every checkpoint of the replay buffer. Here the array holds
``None`` until a transition's infos are stored. Storing, sampling and relabelling are SB3's own, unchanged.
"""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import HerReplayBuffer as Sb3HerReplayBuffer
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.her.goal_selection_strategy import KEY_TO_GOAL_STRATEGY, GoalSelectionStrategy


class HerReplayBuffer(Sb3HerReplayBuffer):
    """SB3's ``HerReplayBuffer`` (same parameters, same sampling), made in milliseconds at any ``buffer_size``.

    :param buffer_size: transitions it holds (over all envs)
    :param observation_space: the goal env's Dict space (observation, achieved_goal, desired_goal)
    :param action_space: the env's action space
    :param env: the vec env whose ``compute_reward`` relabels sampled transitions
    :param n_sampled_goal: relabelled transitions per real one (the HER ratio is ``1 - 1 / (n_sampled_goal + 1)``)
    :param goal_selection_strategy: ``future``, ``final`` or ``episode``
    :param copy_info_dict: keep each transition's infos and pass them to ``compute_reward``
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        env: VecEnv,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        n_sampled_goal: int = 4,
        goal_selection_strategy: GoalSelectionStrategy | str = "future",
        copy_info_dict: bool = False,
    ):
        DictReplayBuffer.__init__(self, buffer_size, observation_space, action_space, device=device, n_envs=n_envs,
                                  optimize_memory_usage=optimize_memory_usage,
                                  handle_timeout_termination=handle_timeout_termination)
        self.env = env
        self.copy_info_dict = copy_info_dict
        if isinstance(goal_selection_strategy, str):
            goal_selection_strategy = KEY_TO_GOAL_STRATEGY[goal_selection_strategy.lower()]
        self.goal_selection_strategy = goal_selection_strategy
        self.n_sampled_goal = n_sampled_goal
        self.her_ratio = 1 - (1.0 / (self.n_sampled_goal + 1))
        self.infos: np.ndarray = np.empty((self.buffer_size, self.n_envs), dtype=object)  # None until stored
        # each transition's episode start and length (0: not sampleable), as SB3 keeps them
        self.ep_start = np.zeros((self.buffer_size, self.n_envs), dtype=np.int64)
        self.ep_length = np.zeros((self.buffer_size, self.n_envs), dtype=np.int64)
        self._current_ep_start = np.zeros(self.n_envs, dtype=np.int64)
