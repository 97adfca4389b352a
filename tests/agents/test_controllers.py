"""Controllers (agents that do not learn): the random one is seeded and stays in the action space,
the constant one returns its action (or a UserError), both survive save -> load, their learn steps
the env without training, and train.py runs them with checkpoints, resume and MLflow."""

import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from stable_baselines3.common.callbacks import BaseCallback

from hydrarl.agents.controllers import ConstantController, RandomController
from hydrarl.agents.factory import build_agent
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import UserError
from hydrarl.training.callbacks import capture_sb3_logs
from hydrarl.training.train import run
from tests.helpers.cli import run_cli
from tests.helpers.compose import compose_cfg

ENVS = ["CartPole", "Pendulum", "FetchReach"]  # Discrete / Box actions; Box / Dict observations


def build(env_name: str, algorithm: str, seed: int = 0, overrides: tuple[str, ...] = (), n_envs: int | None = None):
    cfg = compose_cfg([f"env={env_name}", f"algorithm={algorithm}", *overrides])
    env = make_vec_env(cfg.env, seed, n_envs=n_envs)
    return build_agent(cfg.algorithm, env, seed, "cpu", name=algorithm, env_name=env_name), env


def actions(model, obs, n: int = 20, deterministic: bool = False) -> list[np.ndarray]:
    return [model.predict(obs, deterministic=deterministic)[0] for _ in range(n)]


@pytest.mark.parametrize("env_name", ENVS)
def test_random_is_seeded_reproducible_and_in_the_action_space(env_name):
    first, env = build(env_name, "random", seed=3)
    again, _ = build(env_name, "random", seed=3)
    other, _ = build(env_name, "random", seed=4)
    obs = env.reset()
    a, b, c = actions(first, obs), actions(again, obs), actions(other, obs)
    assert isinstance(first, RandomController)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert all(x.shape == (1, *env.action_space.shape) and env.action_space.contains(x[0]) for x in a)
    assert len({x.tobytes() for x in a}) > 1, "random actions should vary"
    # also with deterministic=True (a uniform distribution has no mode), and for one unbatched observation
    assert len({x.tobytes() for x in actions(first, obs, deterministic=True)}) > 1
    single = {k: v[0] for k, v in obs.items()} if isinstance(obs, dict) else obs[0]
    action, _ = first.predict(single)
    assert action.shape == env.action_space.shape and env.action_space.contains(action)
    env.close()


@pytest.mark.parametrize(
    "env_name, override, expected",
    [
        ("CartPole", None, 0),
        ("CartPole", "1", 1),
        ("Pendulum", None, [0.0]),
        ("Pendulum", "1.5", [1.5]),
        ("FetchReach", None, [0.0, 0.0, 0.0, 0.0]),
        ("FetchReach", "0.25", [0.25] * 4),                       # a number fills every dimension
        ("FetchReach", "[0.5,0,0,-0.5]", [0.5, 0.0, 0.0, -0.5]),
    ],
)
def test_constant_returns_its_action(env_name, override, expected):
    model, env = build(env_name, "constant", overrides=(f"algorithm.action={override}",) if override else (), n_envs=2)
    assert isinstance(model, ConstantController)
    obs = env.reset()
    for _ in range(5):
        action, _ = model.predict(obs, deterministic=False)
        assert action.shape == (2, *env.action_space.shape)
        np.testing.assert_array_equal(action, np.array([expected, expected], dtype=env.action_space.dtype))
        obs, *_ = env.step(action)
    assert len(list(model.policy.parameters())) == 0  # nothing to learn
    env.close()


@pytest.mark.parametrize(
    "env_name, value",
    [("CartPole", "2"), ("CartPole", "0.5"), ("CartPole", "left"), ("Pendulum", "3.0"), ("Pendulum", "[0,0]"), ("FetchReach", "[1,2]")],
)
def test_constant_action_outside_the_action_space_is_a_user_error(env_name, value):
    with pytest.raises(UserError, match=r"algorithm\.action=.* is not in the env's action space") as info:
        build(env_name, "constant", overrides=(f"algorithm.action={value}",))
    assert ("Discrete(2)" if env_name == "CartPole" else "Box(") in str(info.value)


def test_save_load_keeps_the_controllers(tmp_path):
    constant, env = build("Pendulum", "constant", overrides=("algorithm.action=1.5",))
    constant.save(tmp_path / "constant.zip")
    loaded = ConstantController.load(tmp_path / "constant.zip", env=env)
    obs = env.reset()
    assert loaded.action == 1.5
    np.testing.assert_array_equal(loaded.predict(obs)[0], [[1.5]])

    rand, env = build("Pendulum", "random", seed=5)
    obs = env.reset()
    actions(rand, obs, 7)  # move the sampler on: a loaded copy continues from here, not from the seed
    rand.save(tmp_path / "random.zip")
    continued = actions(rand, obs)
    loaded = RandomController.load(tmp_path / "random.zip", env=env)
    assert all(np.array_equal(x, y) for x, y in zip(continued, actions(loaded, obs), strict=True))
    fresh, _ = build("Pendulum", "random", seed=5)
    assert not all(np.array_equal(x, y) for x, y in zip(continued, actions(fresh, obs), strict=True))
    env.close()


class StopAfter(BaseCallback):
    def __init__(self, steps: int | None = None):
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return self.steps is None or self.n_calls < self.steps


def test_learn_steps_the_env_counts_steps_and_trains_nothing():
    model, env = build("CartPole", "random", seed=1, n_envs=2)
    logs = capture_sb3_logs(model)
    callback = StopAfter()
    model.learn(150, callback=callback)
    assert model.num_timesteps == 150 and callback.n_calls == 75  # two env copies per step
    assert len(model.ep_info_buffer) > 0 and model._episode_num == len(model.ep_info_buffer)
    episodes = list(model.ep_info_buffer)
    assert logs.values["rollout/ep_rew_mean"] == pytest.approx(np.mean([e["r"] for e in episodes]))
    assert logs.values["time/episodes"] == len(episodes) and logs.values["time/fps"] > 0
    model.learn(100, reset_num_timesteps=False)
    assert model.num_timesteps == 250
    # a callback returning False (the Trainer's Ctrl-C flag) ends learn at once
    stopped = StopAfter(10)
    model.learn(1000, callback=stopped, reset_num_timesteps=False)
    assert model.num_timesteps == 250 + 2 * 10
    env.close()


def test_train_py_with_a_controller_checkpoints_resumes_and_records(tmp_path, tracking_uri):
    base = ["env=CartPole", "algorithm=random", "seed=7", "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=3",
            "trainer.progress_bar=false"]
    run_dir = tmp_path / "run"
    mlflow = f"logger.mlflow.tracking_uri={tracking_uri}"
    proc = run_cli([*base, "trainer.n_epochs=2", mlflow, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "best" / "model.zip").is_file()
    assert {p.name for p in (checkpoints / "last").iterdir()} >= {"model.zip", "trainer_state.json", "rng.pt"}
    assert "epoch 2/2 | steps 400" in proc.stdout + proc.stderr

    proc = run_cli([f"trainer.resume={run_dir}", "trainer.n_epochs=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    state = json.loads((checkpoints / "last" / "trainer_state.json").read_text())
    assert (state["epoch"], state["num_timesteps"]) == (3, 600)

    # The sampler's state is saved with the model: after the resume, evaluations are those of an
    # uninterrupted run (a sampler re-seeded on load would replay the first actions instead).
    full = run(compose_cfg([*base, "trainer.n_epochs=3", "logger=[]"]), tmp_path / "full")
    full_state = json.loads((tmp_path / "full" / "checkpoints" / "last" / "trainer_state.json").read_text())
    evals = [[v for k, v in sorted(h.items()) if k.startswith("eval/")] for h in state["history"]]
    assert evals == [[v for k, v in sorted(h.items()) if k.startswith("eval/")] for h in full_state["history"]]
    assert full.num_timesteps == 600

    client = MlflowClient(tracking_uri)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("CartPole").experiment_id])
    assert mlflow_run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(mlflow_run.info.run_id, "eval/mean_reward")] == [200, 400, 600]
    assert all(m.value > 0 for m in client.get_metric_history(mlflow_run.info.run_id, "time/steps_per_second"))
    assert "rollout/ep_rew_mean" in mlflow_run.data.metrics

    check = subprocess.run([sys.executable, "-m", "hydrarl.launchers.roundtrip", str(run_dir)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "round trip ok: RandomController" in check.stdout


def test_a_bad_constant_action_ends_train_py_with_exit_2(tmp_path):
    proc = run_cli(["env=CartPole", "algorithm=constant", "algorithm.action=5", "logger=[]", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "algorithm.action=5 is not in the env's action space Discrete(2)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
