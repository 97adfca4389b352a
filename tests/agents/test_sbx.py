"""The JAX agents (sbx-rl, ``algorithm=sbx_*``) behind our configs: each saves and loads to the same actions, a resumed
run continues its counters and its random key, a search prunes them like any agent, JAX stays out of the processes
that do not use it, and ``trainer.torch_threads`` reaches JAX. Every env of each kind trains them in the function tier."""

import json
import os
import subprocess
import sys

import numpy as np
import optuna
import pytest
import torch
import yaml

from hydrarl.agents.factory import build_agent
from hydrarl.config.compose import available
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import MissingDependency
from hydrarl.paths import PROJECT_ROOT
from hydrarl.sweep.components import open_storage
from hydrarl.sweep.reporter import PRUNER_ATTR, TrialReporter
from hydrarl.training.backends import JAX_CACHE_DIR
from hydrarl.training.checkpoint import AGENT_KEY, RNG, load_checkpoint
from hydrarl.training.train import run
from tests.helpers.cli import run_cli
from tests.helpers.compose import compose_cfg, fast_overrides

sbx = pytest.importorskip("sbx")

# Each JAX agent on an env it acts in: Box vectors, Discrete vectors, goal dicts.
AGENT_ENVS = {"sbx_sac": "Pendulum", "sbx_tqc": "Pendulum", "sbx_td3": "Pendulum", "sbx_crossq": "Pendulum",
              "sbx_ppo": "Pendulum", "sbx_dqn": "CartPole", "sbx_sac_her": "FetchReach", "sbx_tqc_her": "FetchReach"}


def test_every_jax_config_is_covered_here():
    assert sorted(a for a in available("algorithm") if a.startswith("sbx_")) == sorted(AGENT_ENVS)


@pytest.mark.parametrize("algorithm", sorted(AGENT_ENVS))
def test_a_trained_jax_agent_acts_the_same_after_save_and_load(algorithm, tmp_path):
    cfg = compose_cfg([f"env={AGENT_ENVS[algorithm]}", f"algorithm={algorithm}", *fast_overrides(algorithm),
                       "env.max_episode_steps=20"])
    env = make_vec_env(cfg.env, 0)
    model = build_agent(cfg.algorithm, env, seed=0, device="cpu", name=algorithm)
    fresh = build_agent(cfg.algorithm, env, seed=0, device="cpu", name=algorithm)
    model.learn(120)  # past learning_starts (50) or two rollouts of 32 steps: the networks were updated
    model.save(tmp_path / "model.zip")
    loaded = type(model).load(tmp_path / "model.zip", env=env, device="cpu")
    observations = [env.reset()]
    for _ in range(7):
        observations.append(env.step(model.predict(observations[-1], deterministic=True)[0])[0])
    for obs in observations:
        action = model.predict(obs, deterministic=True)[0]
        np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)
        assert env.action_space.contains(action[0])
    if algorithm != "sbx_dqn":  # DQN's greedy action over 2 actions may well agree with an untrained net's
        assert any(not np.array_equal(fresh.predict(o, deterministic=True)[0], model.predict(o, deterministic=True)[0])
                   for o in observations), "training changed nothing, so the round trip proves nothing"
    env.close()


def test_a_resumed_jax_run_continues_its_counters_and_its_random_key(tmp_path):
    base = ["env=Pendulum", "algorithm=sbx_sac", "seed=4", "trainer.eval_after_n_steps=150", "trainer.n_test_rollouts=1",
            "trainer.progress_bar=false", "logger=[]", *fast_overrides("sbx_sac")]
    first = run(compose_cfg([*base, "trainer.n_epochs=1"]), tmp_path / "r")
    assert (first.status, first.num_timesteps) == ("completed", 150)
    saved_key = torch.load(tmp_path / "r" / "checkpoints" / "last" / RNG, weights_only=False)[AGENT_KEY]
    env = make_vec_env(compose_cfg(base).env, 0)
    restored, _ = load_checkpoint(tmp_path / "r" / "checkpoints" / "last", sbx.SAC, env, "cpu")
    updates = restored._n_updates
    assert updates > 0 and restored.replay_buffer.size() == 150
    # sbx's load starts the key again from the seed; the checkpoint's key continues the run's stream
    np.testing.assert_array_equal(np.asarray(restored.key), saved_key)
    import jax

    assert not np.array_equal(saved_key, np.asarray(jax.random.PRNGKey(4)))

    resumed = run(compose_cfg([*base, "trainer.n_epochs=2", f"trainer.resume={tmp_path / 'r'}"]), tmp_path / "r")
    assert (resumed.status, resumed.epochs_run, resumed.num_timesteps) == ("completed", 2, 300)
    final, _ = load_checkpoint(tmp_path / "r" / "checkpoints" / "last", sbx.SAC, env, "cpu")
    assert final._n_updates == updates + 150  # one gradient step per env step, counted on from the checkpoint
    state = json.loads((tmp_path / "r" / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_a_search_prunes_a_jax_trial_from_inside_the_trainer(tmp_path):
    """As for any agent: the trial reports each epoch to the study, and its pruner stops it."""
    storage = f"journal:{tmp_path / 'journal.log'}"
    study = optuna.create_study(study_name="p", storage=open_storage(storage), direction="maximize")
    study.set_user_attr(PRUNER_ATTR, {"_target_": "optuna.pruners.ThresholdPruner", "lower": 1e9})  # prunes any value
    trial = study.ask()
    cfg = compose_cfg(["env=Pendulum", "algorithm=sbx_sac", "seed=0", "logger=[]", "trainer.progress_bar=false",
                       "trainer.n_epochs=4", "trainer.eval_after_n_steps=100", "trainer.n_test_rollouts=1",
                       *fast_overrides("sbx_sac"),
                       f"trial={{storage:'{storage}',study_name:p,trial_id:{trial._trial_id},number:0,report:true}}"])
    result = run(cfg, tmp_path / "run", TrialReporter.from_config(cfg.trial))
    assert (result.status, result.epochs_run, result.num_timesteps) == ("pruned", 1, 100)
    assert study.trials[0].intermediate_values == {1: result.metrics["eval/mean_reward"]}


def test_jax_is_imported_by_a_jax_run_only_with_its_settings_and_keeps_what_it_compiled(tmp_path):
    """A torch agent's run never imports JAX; a JAX agent's imports it after the settings are in place (one thread,
    the CPU, the compilation cache), and what it compiles lands in the cache, where the next process finds it."""
    script = """
import os, sys
from hydrarl.agents.factory import build_agent
from hydrarl.config.compose import compose
from hydrarl.envs.factory import make_vec_env
from hydrarl.training.backends import set_up_backends
set_up_backends(1, "cpu")
for algorithm in ("sac", "sbx_sac"):
    cfg = compose(["env=Pendulum", f"algorithm={algorithm}", "algorithm.buffer_size=200", "algorithm.learning_starts=50"])
    model = build_agent(cfg.algorithm, make_vec_env(cfg.env, 0), 0, "cpu", name=algorithm)
    print(algorithm, "jax" in sys.modules)
model.learn(60)
import jax
print(os.environ["XLA_FLAGS"], jax.devices()[0].platform, jax.config.values["jax_compilation_cache_dir"])
"""
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_PLATFORMS", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[:2] == ["sac False", "sbx_sac True"]
    assert "--xla_cpu_multi_thread_eigen=false" in lines[2] and lines[2].endswith(f" cpu {tmp_path / 'cache'}")
    assert any(p.name.startswith("jit__train") for p in (tmp_path / "cache").iterdir())  # SAC's update, compiled
    assert JAX_CACHE_DIR.parts[-2:] == ("hydrarl", "jax")  # the default, when JAX_COMPILATION_CACHE_DIR is not set


def test_without_the_jax_extra_a_jax_agent_names_the_extra_to_install():
    message = str(MissingDependency("algorithm=sbx_sac (sbx.SAC)", "sbx"))
    assert "needs the optional module 'sbx'" in message and "pip install -e '.[jax]'" in message


def test_a_two_trial_search_over_a_jax_agent_prunes_both_trials(tmp_path):
    """The rl_optuna sweeper through the command line, two trials at once, a pruner that prunes any value: each JAX
    trial reports its first epoch and stops there, and the search ends with both pruned."""
    sweep = tmp_path / "search"
    done = run_cli(["--multirun", "+search=Pendulum/sac", "algorithm=sbx_sac", f"hydra.sweep.dir={sweep}",
                    "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                    "+hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner", "+hydra.sweeper.pruner.lower=1e9",
                    "hydra.sweeper.pruner.n_warmup_steps=0",  # over the preset's median pruner
                    "trainer.n_epochs=3", "trainer.eval_after_n_steps=100", "trainer.n_test_rollouts=1", "logger=[]",
                    *fast_overrides("sbx_sac")], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["trials"] == {"PRUNED": 2}
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("trial_*/trial_result.json"))]
    assert [(r["status"], r["epochs_run"], r["num_timesteps"]) for r in results] == [("pruned", 1, 100)] * 2
