"""The offline agents (``algorithm=iql|cql|bc``, d3rlpy) and what they learn from: aligned segments of real datasets,
rewards computed again by the real PenguinPi env, glitched steps dropped whole, the action scaling saved with the
model and undone when it acts, a save -> load round trip, and bad input refused before anything is recorded."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from hydrarl.agents.offline import BC, IQL
from hydrarl.agents.offline_data import dataset_segments, split_at_glitches
from hydrarl.datasets.episodes import Episode, EpisodeDataset
from hydrarl.errors import UserError
from hydrarl.paths import PROJECT_ROOT
from tests.helpers.cli import run_cli

PENGUINPI = "hydrarl.envs.penguinpi:PenguinPi-v0"


def pendulum() -> DummyVecEnv:
    return DummyVecEnv([lambda: gym.make("Pendulum-v1")])


def test_a_glitched_step_is_dropped_whole_and_every_kept_step_stays_aligned():
    steps = 8
    # every row carries its index: observation t, action t, reward t and the ticks after step t must stay together
    observations = {"image": np.arange(steps + 1, dtype=np.uint8).reshape(-1, 1, 1, 1).repeat(3, axis=3),
                    "encoders": np.full((steps + 1, 2), 10.0, np.float32)}
    observations["encoders"][4] = (250.0, 12.0)  # the ticks of step 3: a counter glitch
    episode = Episode(observations, np.arange(steps, dtype=np.float32)[:, None], np.arange(steps, dtype=float),
                      np.array([False] * (steps - 1) + [True]), np.zeros(steps, bool))
    first, second = split_at_glitches(episode, episode.rewards, max_ticks=100)
    assert list(first.actions[:, 0]) == [0, 1, 2] and list(first.rewards) == [0, 1, 2] and not first.terminal
    assert list(first.observations["image"][:, 0, 0, 0]) == [0, 1, 2, 3]  # ends at the observation before the glitch
    assert list(second.actions[:, 0]) == [4, 5, 6, 7] and list(second.rewards) == [4, 5, 6, 7] and second.terminal
    assert list(second.observations["image"][:, 0, 0, 0]) == [4, 5, 6, 7, 8]  # starts where the glitch left the robot
    for segment in (first, second):  # observation t is the one before action t, as recorded
        assert np.array_equal(segment.observations["image"][:-1, 0, 0, 0], segment.actions[:, 0].astype(np.uint8))
    [whole] = split_at_glitches(episode, episode.rewards, max_ticks=None)
    assert len(whole) == steps


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A real PenguinPi dataset: 2 scripted episodes of 25 steps with the wheel ticks, recorded by collect.py."""
    path = tmp_path_factory.mktemp("offline") / "loop"
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "experiment" / "collect.py"), "env=PenguinPi",
                           "collector=scripted", "episodes=2", f"dataset={path}", "env.max_episode_steps=25",
                           "env.kwargs.include_encoders=true", "env.policy=MultiInputPolicy"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return path


def test_rewards_computed_again_by_the_env_equal_the_recorded_ones_and_are_cached(recorded):
    env = DummyVecEnv([lambda: gym.make(PENGUINPI, include_encoders=True)])
    try:
        recomputed, summary = dataset_segments(str(recorded), env, reward="env", max_ticks=100)
        stored, _ = dataset_segments(str(recorded), env, reward="dataset", max_ticks=100)
        assert summary["recomputed_rewards"] == 2 and summary["steps"] == 50 and summary["dropped_steps"] == 0
        for again, original in zip(recomputed, stored, strict=True):
            np.testing.assert_allclose(again.rewards, original.rewards, rtol=0, atol=1e-6)  # stored as float32
        [cache] = (recorded / ".cache" / "rewards").iterdir()
        sentinel = np.full(25, 7.0)
        np.save(cache / "0.npy", sentinel)  # the cache is what a second read uses
        again, _ = dataset_segments(str(recorded), env, reward="env", max_ticks=100)
        assert np.array_equal(again[0].rewards, sentinel)
    finally:
        env.close()


def test_a_dataset_without_rewards_gets_the_envs(recorded, tmp_path):
    source = EpisodeDataset(recorded).read()
    episodes = [Episode(e.observations, e.actions, np.full(len(e.actions), np.nan), e.terminations, e.truncations,
                        {k: v for k, v in e.infos.items() if not isinstance(v, dict)}) for e in source.iterate_episodes()]
    EpisodeDataset(tmp_path / "bare").append(episodes, source.observation_space, source.action_space)
    env = DummyVecEnv([lambda: gym.make(PENGUINPI, include_encoders=True)])
    try:
        filled, summary = dataset_segments(str(tmp_path / "bare"), env, reward="dataset", max_ticks=100)
        stored, _ = dataset_segments(str(recorded), env, reward="dataset", max_ticks=100)
    finally:
        env.close()
    assert summary["recomputed_rewards"] == 2
    np.testing.assert_allclose(filled[1].rewards, stored[1].rewards, atol=1e-6)


def constant_action_dataset(path, action: float, episodes: int = 3, steps: int = 50) -> None:
    """Pendulum episodes whose every action is ``action`` (N·m) plus a little noise."""
    env, rng, made = gym.make("Pendulum-v1"), np.random.default_rng(0), []
    for i in range(episodes):
        obs, _ = env.reset(seed=i)
        rows, actions, rewards = [obs], [], []
        for _ in range(steps):
            act = np.clip(np.array([action + rng.normal(0, 0.05)], np.float32), -2, 2)
            obs, reward, *_ = env.step(act)
            rows.append(obs), actions.append(act), rewards.append(reward)
        made.append(Episode(np.array(rows), np.array(actions), np.array(rewards), np.zeros(steps, bool),
                            np.array([False] * (steps - 1) + [True])))
    EpisodeDataset(path).append(made, env.observation_space, env.action_space)


def test_the_action_scaling_learnt_from_the_data_is_saved_and_undone_when_the_model_acts(tmp_path):
    constant_action_dataset(tmp_path / "push", 1.5)
    model = BC("MlpPolicy", pendulum(), dataset=str(tmp_path / "push"), batch_size=32, action_scaler="min_max", seed=0)
    model.learn(300)
    obs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]], np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(actions, 1.5, atol=0.2)  # the env's units: not the scaled [-1, 1] ones
    scaler = json.loads(model.d3rlpy_config)["action_scaler"]
    assert scaler["type"] == "min_max" and 1.3 < scaler["params"]["minimum"][0] < scaler["params"]["maximum"][0] < 1.7
    model.save(tmp_path / "model.zip")
    loaded = BC.load(tmp_path / "model.zip", env=pendulum())
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], actions)


def test_iql_round_trip_keeps_networks_optimisers_and_step_count(tmp_path):
    model = IQL("MlpPolicy", pendulum(), dataset="random", random_episodes=2, batch_size=32, seed=1)
    model.learn(50)
    model.save(tmp_path / "iql.zip")
    loaded = IQL.load(tmp_path / "iql.zip", env=pendulum())
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    assert loaded.num_timesteps == 50
    before = {k: v["state"] for k, v in model.optimizers.state_dict().items()}
    after = {k: v["state"] for k, v in loaded.optimizers.state_dict().items()}
    assert before.keys() == after.keys() and all(len(after[k]) == len(before[k]) > 0 for k in before)
    loaded.learn(10, reset_num_timesteps=False)  # trains on, from the same dataset (collected again, same seed)
    assert loaded.num_timesteps == 60


def test_bad_settings_are_refused_with_what_is_allowed(tmp_path):
    with pytest.raises(UserError, match="dataset="):
        IQL("MlpPolicy", pendulum(), dataset=None)
    with pytest.raises(UserError, match="algorithm.expectile='high' is not allowed: a number"):
        IQL("MlpPolicy", pendulum(), dataset="random", expectile="high")
    with pytest.raises(UserError, match="algorithm.action_scaler='robust' is not allowed: null | min_max"):
        IQL("MlpPolicy", pendulum(), dataset="random", action_scaler="robust")
    with pytest.raises(UserError, match="holds no dataset"):
        IQL("MlpPolicy", pendulum(), dataset=str(tmp_path / "none"))


def test_the_train_command_refuses_a_dataset_of_another_env_before_recording(recorded, tmp_path):
    done = run_cli(["env=Pendulum", "algorithm=iql", f"dataset={recorded}", "logger=[mlflow]",
                    f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "holds observations Dict(" in line and "this env has Box(" in line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_an_offline_run_trains_evaluates_in_the_env_and_resumes(tmp_path):
    common = ["env=Pendulum", "algorithm=cql", "dataset=random", "algorithm.random_episodes=2", "algorithm.batch_size=32",
              "trainer.eval_after_n_steps=40", "trainer.n_test_rollouts=1", "trainer.progress_bar=false", "logger=[]",
              "seed=3", f"hydra.run.dir={tmp_path}/run"]
    first = run_cli([*common, "trainer.n_epochs=1"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli([*common, "trainer.n_epochs=2", f"trainer.resume={tmp_path}/run"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and state["num_timesteps"] == 80  # gradient steps
    assert "train/critic_loss" in state["history"][-1] and "eval/mean_reward" in state["history"][-1]
    assert "Gym has been unmaintained" not in first.stderr + second.stderr  # the legacy gym's notice is dropped


def test_a_search_over_iql_trains_trials_on_a_dataset_with_wheel_ticks(recorded, tmp_path):
    """+search=PenguinPi/iql on the recorded dataset (dict observations: the policy reads the image, the ticks clean
    the data): two trials, each trained and evaluated in the simulator, recorded in the study's results."""
    done = run_cli(["--multirun", "+search=PenguinPi/iql", f"dataset={recorded}", "hydra.sweeper.n_trials=2",
                    "hydra.sweeper.n_jobs=1", "trainer.n_epochs=2", "trainer.eval_after_n_steps=10",
                    "trainer.n_test_rollouts=1", "env.max_episode_steps=10", "env.kwargs.include_encoders=true",
                    "env.policy=MultiInputPolicy", "algorithm.batch_size=16", "logger=[]",
                    f"hydra.sweep.dir={tmp_path}/search"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = (tmp_path / "search" / "optimization_results.yaml").read_text()
    assert "best_value" in results
    finished = sorted((tmp_path / "search").glob("*/trial_result.json"))
    assert len(finished) == 2 and all(json.loads(p.read_text())["status"] == "completed" for p in finished)
