"""Short real runs through ``run()``: seeding, early stop, schedules over the whole run, restore_policy."""

import json
import shutil

import numpy as np
import pytest
import yaml
from stable_baselines3 import DQN

from hydrarl.errors import UserError
from hydrarl.training.result import RESULT_FILE
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg, fast_overrides

PENDULUM = ["env=Pendulum", "algorithm=sac", "logger=[]", "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=2",
            "trainer.progress_bar=false", *fast_overrides("sac"),
            "algorithm.train_freq=4", "algorithm.policy_kwargs.net_arch=[64,64]"]  # a quarter of the gradient steps, small nets: nothing here depends on them


def history(run_dir):
    return json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())["history"]


def eval_only(entries):
    return [{k: v for k, v in h.items() if k.startswith("eval/")} for h in entries]


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    results = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        run(compose_cfg([*PENDULUM, f"seed={seed}", "trainer.n_epochs=2"]), tmp_path / name)
        results[name] = eval_only(history(tmp_path / name))
    assert results["a"] == results["b"]
    assert results["a"] != results["c"]


def test_no_seed_draws_one_and_records_it(tmp_path):
    run(compose_cfg([*PENDULUM, "trainer.n_epochs=1"]), tmp_path / "r")
    recorded = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    state = json.loads((tmp_path / "r" / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert isinstance(recorded["seed"], int) and recorded["seed"] == state["seed"] and "seed" not in recorded["trainer"]


def test_early_stop_when_mean_of_last_n_reaches_threshold(tmp_path):
    cfg = compose_cfg([*PENDULUM, "seed=1", "trainer.n_epochs=5", "trainer.early_stop.threshold=-100000", "trainer.early_stop.last_n=2"])
    result = run(cfg, tmp_path / "r")
    assert (result.status, result.early_stopped, result.epochs_run, result.num_timesteps) == ("early_stopped", True, 2, 400)
    assert (result.met_at_step, result.best_mean) == (400, pytest.approx(result.score))  # the rule held at the 2nd epoch
    assert json.loads((tmp_path / "r" / RESULT_FILE).read_text()) == json.loads(json.dumps(result.to_dict()))  # one result file
    assert result.score == pytest.approx(np.mean([h["eval/mean_reward"] for h in history(tmp_path / "r")]))


def test_no_early_stop_runs_every_epoch(tmp_path):
    result = run(compose_cfg([*PENDULUM, "seed=1", "trainer.n_epochs=3", "trainer.early_stop.threshold=100"]), tmp_path / "r")
    assert (result.status, result.epochs_run, result.met_at_step) == ("completed", 3, None)


def test_exploration_schedule_spans_the_run_not_one_epoch(tmp_path):
    # DQN's epsilon decays over exploration_fraction of the *run*: after epoch 1 of 4 (25% of the
    # run, half of the 50% decay window) it must be halfway between 1.0 and 0.05.
    cfg = compose_cfg([
        "env=CartPole", "algorithm=dqn", "logger=[]", "seed=0", "trainer.progress_bar=false", "trainer.n_epochs=4",
        "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=1", "algorithm.exploration_fraction=0.5",
        "algorithm.learning_starts=50", "trainer.early_stop.threshold=-1", "trainer.early_stop.last_n=1",
    ])
    result = run(cfg, tmp_path / "r")
    assert result.epochs_run == 1
    model = DQN.load(tmp_path / "r" / "checkpoints" / "last" / "model.zip")
    assert model.exploration_rate == pytest.approx(1.0 - 0.5 * 0.95, abs=0.01)


def test_best_and_periodic_checkpoints(tmp_path):
    run(compose_cfg([*PENDULUM, "seed=2", "trainer.n_epochs=4", "trainer.checkpoint_every=2"]), tmp_path / "r")
    checkpoints = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best", "epoch_0002", "epoch_0004", "last"]
    state = json.loads((checkpoints / "last" / "trainer_state.json").read_text())
    rewards = [h["eval/mean_reward"] for h in state["history"]]
    assert state["best_score"] == max(rewards) and state["best_epoch"] == int(np.argmax(rewards)) + 1


def test_restore_policy_starts_a_new_run_from_trained_weights(tmp_path):
    run(compose_cfg([*PENDULUM, "seed=3", "trainer.n_epochs=1"]), tmp_path / "first")
    model_path = tmp_path / "first" / "checkpoints" / "last" / "model.zip"
    cfg = compose_cfg([*PENDULUM, "seed=4", "trainer.n_epochs=1", "trainer.n_test_rollouts=0", f"restore_policy={model_path}"])
    # n_test_rollouts=0 and no gradient step before the first evaluation would hide the load: compare weights.
    from stable_baselines3 import SAC

    from hydrarl.agents.factory import build_agent
    from hydrarl.envs.factory import make_vec_env
    from hydrarl.training.train import _restore_policy

    env = make_vec_env(cfg.env, 4)
    fresh = build_agent(cfg.algorithm, env, 4, "cpu")
    _restore_policy(fresh, str(model_path), env)
    trained = SAC.load(model_path)
    for a, b in zip(fresh.policy.parameters(), trained.policy.parameters(), strict=True):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    result = run(cfg, tmp_path / "second")
    assert result.status == "completed" and result.num_timesteps == 200


def test_restore_policy_of_another_algorithm_is_refused(tmp_path):
    run(compose_cfg([*PENDULUM, "seed=3", "trainer.n_epochs=1"]), tmp_path / "first")
    model_path = tmp_path / "first" / "checkpoints" / "last" / "model.zip"
    cfg = compose_cfg(["env=Pendulum", "algorithm=td3", "logger=[]", f"restore_policy={model_path}"])
    with pytest.raises(UserError, match="restore_policy"):
        run(cfg, tmp_path / "second")
    assert not (tmp_path / "second" / "checkpoints").exists()


def test_a_run_directory_is_never_reused_by_a_new_run(tmp_path):
    run(compose_cfg([*PENDULUM, "seed=3", "trainer.n_epochs=1"]), tmp_path / "r")
    before = (tmp_path / "r" / "checkpoints" / "last" / "trainer_state.json").read_text()
    with pytest.raises(UserError, match="already holds a run"):
        run(compose_cfg([*PENDULUM, "seed=3", "trainer.n_epochs=1"]), tmp_path / "r")
    assert (tmp_path / "r" / "checkpoints" / "last" / "trainer_state.json").read_text() == before
    shutil.rmtree(tmp_path / "r")
