"""MazeGoals (src/envs/maze.py) and conf/env/PointMaze.yaml on gymnasium-robotics' real PointMaze: Fetch's reward
and success conventions step by step and for relabelled goals, bounded goal spaces, the episode ending at the goal,
and the clear errors for a dense reward or an env that is not a maze."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from hydrarl.envs.factory import make_env
from hydrarl.envs.maze import MazeGoals
from hydrarl.errors import UserError
from tests.helpers.compose import compose_cfg


@pytest.fixture
def maze() -> gym.Env:
    return make_env(compose_cfg(["env=PointMaze"]).env)


def test_rewards_and_success_follow_fetch_on_a_random_walk(maze):
    obs, info = maze.reset(seed=3)
    assert info["is_success"] == 0.0
    compute = maze.get_wrapper_attr("compute_reward")
    goals = maze.observation_space["achieved_goal"]
    maze.action_space.seed(3)
    for _ in range(100):
        obs, reward, terminated, truncated, info = maze.step(maze.action_space.sample())
        assert reward == (0.0 if info["is_success"] else -1.0) == compute(obs["achieved_goal"], obs["desired_goal"], info)
        assert goals.contains(obs["achieved_goal"]) and goals.contains(obs["desired_goal"])
    assert goals.low.tolist() == [-1.5, -1.5] and goals.high.tolist() == [1.5, 1.5]  # the U's open cells


def test_compute_reward_takes_a_batch_of_relabelled_goals(maze):
    maze.reset(seed=0)
    achieved = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, -1.0]])
    desired = np.array([[0.3, 0.3], [0.4, 0.4], [-1.0, 1.0]])  # 0.42 m (reached), 0.57 m, 2.8 m away
    assert maze.get_wrapper_attr("compute_reward")(achieved, desired, None).tolist() == [0.0, -1.0, -1.0]


def test_the_episode_ends_with_success_when_the_point_is_put_on_the_goal(maze):
    obs, _ = maze.reset(seed=1)
    assert np.linalg.norm(obs["achieved_goal"] - [-1.0, -1.0]) < 0.36  # the start cell, jittered
    assert np.linalg.norm(obs["desired_goal"] - [-1.0, 1.0]) < 0.36     # the goal cell, across the wall
    point = maze.unwrapped.point_env
    point.set_state(np.asarray(obs["desired_goal"], dtype=float), np.zeros(2))
    obs, reward, terminated, _, info = maze.step(np.zeros(2))
    assert (reward, terminated, info["is_success"]) == (0.0, True, 1.0)


def test_the_model_file_gymnasium_robotics_writes_is_removed_once_loaded(maze):
    """Each maze writes its MuJoCo model to /tmp/ant_maze<time>.xml and never removes it (1,500 files after a few
    test runs); the wrapper removes it once MuJoCo has loaded it, and the env still resets and steps."""
    path = Path(maze.unwrapped.tmp_xml_file_path)
    assert path.name.startswith("ant_maze") and not path.exists()
    maze.reset(seed=0)
    assert maze.step(maze.action_space.sample())[0]["achieved_goal"].shape == (2,)


def test_a_dense_maze_or_another_env_is_refused():
    with pytest.raises(UserError, match="reward_type='dense' is not allowed"):
        MazeGoals(gym.make("gymnasium_robotics:PointMaze_UMaze-v3", reward_type="dense"))
    with pytest.raises(UserError, match="wraps gymnasium-robotics mazes"):
        MazeGoals(gym.make("Pendulum-v1"))
