"""Resume: an interrupted run (epoch boundary or Ctrl-C mid-epoch) continues from its last
checkpoint and ends with the counters of an uninterrupted run, in the same MLflow run."""

import json
import shutil
import signal
import subprocess
import sys

import numpy as np
from mlflow.tracking import MlflowClient
from stable_baselines3 import SAC

from hydrarl.paths import TRAIN_SCRIPT as TRAIN
from hydrarl.training.result import RESULT_FILE
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg, fast_overrides

BASE = ["env=Pendulum", "algorithm=sac", "seed=5", "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=2",
        "trainer.progress_bar=false", *fast_overrides("sac"),
        "algorithm.policy_kwargs.net_arch=[64,64]"]  # small nets: nothing here depends on them (train_freq stays 1: a mid-epoch stop must land on a collection boundary)


def state_of(run_dir):
    return json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())


def test_resume_after_epoch_k_ends_with_uninterrupted_counters(tmp_path, tracking_uri):
    mlflow_override = f"logger.mlflow.tracking_uri={tracking_uri}"
    uninterrupted = run(compose_cfg([*BASE, "trainer.n_epochs=4", "logger=[]"]), tmp_path / "full")
    first = run(compose_cfg([*BASE, "trainer.n_epochs=2", mlflow_override]), tmp_path / "part")
    assert (first.epochs_run, first.num_timesteps) == (2, 400)
    checkpoint_model = SAC.load(tmp_path / "part" / "checkpoints" / "last" / "model.zip")

    resumed = run(compose_cfg([*BASE, "trainer.n_epochs=4", mlflow_override, f"trainer.resume={tmp_path / 'part'}"]), tmp_path / "part")
    assert (resumed.epochs_run, resumed.num_timesteps, resumed.status) == (4, 400 * 2, "completed")
    assert (resumed.epochs_run, resumed.num_timesteps) == (uninterrupted.epochs_run, uninterrupted.num_timesteps)
    assert json.loads((tmp_path / "part" / RESULT_FILE).read_text())["epochs_run"] == 4  # the resumed run's result replaced the first
    final_model = SAC.load(tmp_path / "part" / "checkpoints" / "last" / "model.zip")
    full_model = SAC.load(tmp_path / "full" / "checkpoints" / "last" / "model.zip")
    assert final_model._n_updates == full_model._n_updates  # gradient steps continue, not restart
    assert final_model._n_updates > checkpoint_model._n_updates
    # The first two epochs are the same seeded run in both.
    part_history, full_history = state_of(tmp_path / "part")["history"], state_of(tmp_path / "full")["history"]
    assert len(part_history) == 4
    assert [h["eval/mean_reward"] for h in part_history[:2]] == [h["eval/mean_reward"] for h in full_history[:2]]
    # One MLflow run holds all four epochs.
    client = MlflowClient(tracking_uri)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    assert mlflow_run.info.run_id == first.run_id == resumed.run_id
    assert [m.step for m in client.get_metric_history(first.run_id, "eval/mean_reward")] == [200, 400, 600, 800]


def test_replay_buffer_comes_back_with_the_checkpoint(tmp_path):
    run(compose_cfg([*BASE, "trainer.n_epochs=1", "logger=[]"]), tmp_path / "r")
    from hydrarl.agents.factory import build_agent
    from hydrarl.envs.factory import make_vec_env
    from hydrarl.training.checkpoint import load_checkpoint

    cfg = compose_cfg([*BASE, "logger=[]"])
    env = make_vec_env(cfg.env, 0)
    model, state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last", SAC, env, "cpu")
    assert model.replay_buffer.pos == 200 and state.num_timesteps == model.num_timesteps == 200
    assert model.replay_buffer.observations.shape[0] == model.replay_buffer.buffer_size
    assert np.abs(model.replay_buffer.observations[:200]).sum() > 0
    build_agent(cfg.algorithm, env, 0, "cpu")  # the checkpointed classes still build from config


def test_resuming_twice_from_one_checkpoint_gives_the_same_run(tmp_path):
    run(compose_cfg([*BASE, "trainer.n_epochs=1", "logger=[]"]), tmp_path / "base")
    outcomes = []
    for name in ("x", "y"):
        shutil.copytree(tmp_path / "base", tmp_path / name)
        run(compose_cfg([*BASE, "trainer.n_epochs=2", "logger=[]", f"trainer.resume={tmp_path / name}"]), tmp_path / name)
        outcomes.append({k: v for k, v in state_of(tmp_path / name)["history"][1].items() if k.startswith("eval/")})
    assert outcomes[0] == outcomes[1]


def test_ctrl_c_mid_epoch_checkpoints_and_resume_finishes_the_run(tmp_path, tracking_uri):
    run_dir = tmp_path / "run"
    args = [*BASE, "trainer.n_epochs=3", "trainer.eval_after_n_steps=400", f"logger.mlflow.tracking_uri={tracking_uri}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, str(TRAIN), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "epoch 1/3" in line:
            proc.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 130, out
    state = state_of(run_dir)
    assert state["epoch"] in (1, 2) and state["num_timesteps"] >= 400
    client = MlflowClient(tracking_uri)
    (interrupted,) = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    assert interrupted.info.status == "KILLED"
    assert not (run_dir / RESULT_FILE).exists()  # an interrupted run has no result yet

    done = subprocess.run([sys.executable, str(TRAIN), f"trainer.resume={run_dir}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    state = state_of(run_dir)
    assert (state["epoch"], state["num_timesteps"], state["epoch_end_step"]) == (3, 1200, None)
    finished = client.get_run(interrupted.info.run_id)
    assert finished.info.status == "FINISHED"
    result = json.loads((run_dir / RESULT_FILE).read_text())
    assert (result["status"], result["epochs_run"], result["num_timesteps"]) == ("completed", 3, 1200)
    assert [m.step for m in client.get_metric_history(finished.info.run_id, "eval/mean_reward")] == [400, 800, 1200]
    assert (run_dir / ".hydra" / "config.yaml").exists() and list((run_dir / ".hydra").glob("resumed_*"))

    # Train longer, then resume once more with no arguments: the second resume's settings persist.
    longer = subprocess.run([sys.executable, str(TRAIN), f"trainer.resume={run_dir}", "trainer.n_epochs=4"], capture_output=True, text=True, timeout=300)
    assert longer.returncode == 0, longer.stderr
    assert (state_of(run_dir)["epoch"], state_of(run_dir)["num_timesteps"]) == (4, 1600)
    again = subprocess.run([sys.executable, str(TRAIN), f"trainer.resume={run_dir}"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    newest = sorted((run_dir / ".hydra").glob("resumed_*"))[-1]
    assert "trainer.n_epochs=4" in (newest / "overrides.yaml").read_text()
    assert state_of(run_dir)["epoch"] == 4
