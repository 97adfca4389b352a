"""gymnasium-robotics' mazes (PointMaze, AntMaze) with the conventions of the Fetch goal tasks (docs/envs/maze.md).

The mazes are goal-dict envs like Fetch, but they differ in three ways that matter to our agents:

- success is ``info["success"]``; the Trainer's evaluation and the agents read ``info["is_success"]``;
- the sparse reward is 1 at the goal and 0 elsewhere; Fetch's is 0 at the goal and −1 elsewhere, the scale HAC's
  subgoal penalty (−H, the worst return of H steps) is set on;
- the goal spaces are unbounded, so an agent that picks goals (HAC's subgoals) has no range to pick them in.

:class:`MazeGoals` fixes all three: ``is_success`` is added, rewards (the step's and ``compute_reward``'s, which HER
and HAC call on relabelled goals) are shifted by −1, and ``achieved_goal`` / ``desired_goal`` are bounded by the
maze's open area (the walls of the outer ring excluded). Only the sparse reward is allowed: a dense reward shifted by
−1 would not be Fetch's convention and would hide that the env was configured differently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hydrarl.errors import UserError


class MazeGoals(gym.Wrapper):
    """A gymnasium-robotics maze with Fetch's goal conventions: reward −1 away from the goal and 0 within its radius
    (0.45 m), ``info["is_success"]``, goal spaces bounded by the maze's open area, shape (2,) in metres."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        maze_env = env.unwrapped
        if xml := getattr(maze_env, "tmp_xml_file_path", None):  # the model gymnasium-robotics wrote for MuJoCo to load
            Path(xml).unlink(missing_ok=True)  # (/tmp/ant_maze<time>.xml, loaded by now), which it never removes
        if not hasattr(maze_env, "maze") or not hasattr(maze_env, "compute_reward"):
            raise UserError(f"hydrarl.envs.maze.MazeGoals wraps gymnasium-robotics mazes (PointMaze_*, AntMaze_*); "
                            f"{env.spec.id if env.spec else type(maze_env).__name__} is not one.")
        if getattr(maze_env, "reward_type", "sparse") != "sparse":
            raise UserError(f"env.kwargs.reward_type={maze_env.reward_type!r} is not allowed with MazeGoals: only "
                            f"'sparse' (shifted to Fetch's −1 / 0).")
        maze = maze_env.maze
        half = np.array([maze.x_map_center, maze.y_map_center]) - maze.maze_size_scaling  # the outer ring is wall
        goal_space = spaces.Box(-half, half, dtype=np.float64)
        self.observation_space = spaces.Dict({**env.observation_space.spaces,
                                              "achieved_goal": goal_space, "desired_goal": goal_space})

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """−1 per goal not reached, 0 per goal reached; goals ``(2,)`` or a batch ``(n, 2)``."""
        return self.env.unwrapped.compute_reward(achieved_goal, desired_goal, info) - 1.0

    def _with_success(self, info: dict[str, Any]) -> dict[str, Any]:
        info["is_success"] = float(info.get("success", False))
        return info

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, self._with_success(info)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) - 1.0, terminated, truncated, self._with_success(info)
