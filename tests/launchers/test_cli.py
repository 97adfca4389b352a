"""The command line as users type it: MLflow contents of a run, bad input (exit 2, one message, nothing
recorded), a crashing run marked FAILED, and a grid multirun that survives a failing job."""

import csv
import os

import pytest
from mlflow.tracking import MlflowClient

from hydrarl.paths import PROJECT_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.compose import fast_overrides
from tests.helpers.recorded_run import RECORDED_SEED

SHORT = ["trainer.n_epochs=2", "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=2", "trainer.progress_bar=false",
         "algorithm.train_freq=4"]  # (sac, td3) a quarter of the gradient steps: nothing here depends on them


def test_mlflow_run_contents(recorded_run):
    """What a run's command records in MLflow and CSV (the shared recorded run: tests/helpers/recorded_run.py)."""
    root, tracking_uri, run_dir = recorded_run
    seed = RECORDED_SEED
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("Pendulum")
    (r,) = client.search_runs([experiment.experiment_id])
    assert r.info.status == "FINISHED"
    assert r.info.run_name == f"Pendulum-sac-seed{seed}"
    params = r.data.params
    assert params["env.id"] == "Pendulum-v1" and params["algorithm.learning_rate"] == "0.0003"
    assert params["trainer.n_epochs"] == "2" and params["seed"] == str(seed) and params["algorithm_name"] == "sac"
    tags = r.data.tags
    assert len(tags["mlflow.source.git.commit"]) in (7, 40) or tags["mlflow.source.git.commit"] == "unknown"
    assert tags["git.dirty"] in ("true", "false", "unknown")
    assert "experiment/train.py" in tags["command"] and f"seed={seed}" in tags["command"].split()
    assert tags["hydrarl.version"] and tags["env"] == "Pendulum" and tags["algorithm"] == "sac"
    steps = [m.step for m in client.get_metric_history(r.info.run_id, "eval/mean_reward")]
    assert steps == [200, 400]
    assert "train/actor_loss" in r.data.metrics and "time/steps_per_second" in r.data.metrics
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"config.yaml", "best_model", "final_model", "logs"} <= artifacts
    assert {a.path for a in client.list_artifacts(r.info.run_id, "final_model")} == {"final_model/model.zip"}
    assert {a.path for a in client.list_artifacts(r.info.run_id, "logs")} == {"logs/train.log"}
    # Artifacts live beside the store, not wherever the command was started.
    assert r.info.artifact_uri.startswith((root / "mlruns").as_uri())
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["step"]) for row in rows] == [200, 400]


def test_crash_mid_training_marks_the_run_failed(tmp_path, tracking_uri):
    proc = run_cli(["env=Pendulum", "algorithm=sac", "seed=1", f"logger.mlflow.tracking_uri={tracking_uri}", f"hydra.run.dir={tmp_path / 'run'}",
                    "+env.wrappers=[{_target_: tests.helpers.CrashAfter, steps: 250}]", *SHORT, "trainer.n_test_rollouts=1",
                    *fast_overrides("sac")],
                   cwd=tmp_path, env={"PYTHONPATH": str(PROJECT_ROOT)})
    assert proc.returncode == 1
    assert "deliberate crash" in proc.stderr
    client = MlflowClient(tracking_uri)
    (r,) = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    assert r.info.status == "FAILED"
    assert "error.txt" in {a.path for a in client.list_artifacts(r.info.run_id)}
    # Each env copy crashes at its step 250: the training env in epoch 2 (the 200-step evaluation
    # env never gets there), so epoch 1's checkpoint is kept.
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.zip").exists()


def test_a_metric_the_run_never_logs_ends_it_failed_after_the_first_evaluation(tmp_path, tracking_uri):
    run_dir = tmp_path / "run"
    proc = run_cli(["env=CartPole", "algorithm=a2c", "trainer.metric=eval/success_rate", f"logger.mlflow.tracking_uri={tracking_uri}",
                    f"hydra.run.dir={run_dir}", *SHORT[:-1], "trainer.eval_after_n_steps=100", "trainer.n_test_rollouts=1"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: trainer.metric=eval/success_rate is not a metric this run logs; it logs: eval/max_reward, ")
    assert "eval/mean_reward" in line and "train/policy_loss" in line and "Traceback" not in proc.stderr
    assert "epoch 1/" not in proc.stderr + proc.stdout  # not one epoch reported with a score of None
    client = MlflowClient(tracking_uri)
    (r,) = client.search_runs([client.get_experiment_by_name("CartPole").experiment_id])
    assert r.info.status == "FAILED" and not (run_dir / "checkpoints").exists()


def test_missing_optional_dependency_names_the_extra(tmp_path):
    blocker = tmp_path / "blocked" / "Box2D"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError('No module named Box2D', name='Box2D')\n")
    proc = run_cli(["env=LunarLander", "algorithm=dqn", f"hydra.run.dir={tmp_path / 'run'}", "logger=[]"], cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path / "blocked")})
    assert proc.returncode == 2
    assert "Box2D" in proc.stderr and ".[box2d]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_grid_multirun_survives_a_failing_job_and_exits_1_naming_it(tmp_path, tracking_uri):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(["--multirun", "env=Pendulum,CartPole", "algorithm=sac", "seed=1", f"logger.mlflow.tracking_uri={tracking_uri}",
                    f"hydra.sweep.dir={sweep_dir}", *SHORT, *fast_overrides("sac")], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "error: 1 job(s) of this multirun failed" in proc.stderr
    assert "1_CartPole_sac: " in proc.stderr and "cannot act in env=CartPole" in proc.stderr
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0_Pendulum_sac", "1_CartPole_sac"]
    assert (sweep_dir / "0_Pendulum_sac" / "checkpoints" / "last" / "model.zip").exists()
    assert "cannot act in env=CartPole" in (sweep_dir / "1_CartPole_sac" / "train.log").read_text()
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [(r.data.tags["env"], r.info.status) for r in runs] == [("Pendulum", "FINISHED")]
    again = run_cli(["--multirun", "env=Pendulum", "algorithm=td3", "seed=2", "logger=[]", f"hydra.sweep.dir={sweep_dir}",
                     *SHORT, *fast_overrides("td3")], cwd=tmp_path)
    assert again.returncode == 0 and "failed" not in again.stderr  # the earlier grid's failures are not this one's


def test_privacy_defaults_are_set_on_import():
    for key in ("COMET_AUTO_LOG_ENV_DETAILS", "COMET_ERROR_TRACKING_ENABLE", "MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED"):
        assert key in os.environ


def _preflight(args):
    from hydrarl.launchers.cli import preflight, register_plugins

    register_plugins()
    return preflight(args)


def test_an_unknown_sweeper_setting_is_refused_naming_the_settings(tmp_path):
    from hydrarl.errors import UserError

    with pytest.raises(UserError) as info:
        _preflight(["--multirun", "+search=Pendulum/sac", "hydra.sweeper.n_trails=3", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert str(info.value).startswith("hydra.sweeper.n_trails is not a setting of the rl_optuna sweeper (src/sweep/settings.py); "
                                      "its settings are: study_name, storage, direction, objectives, n_trials, n_jobs")
    assert not (tmp_path / "sweep").exists()


def test_resume_is_refused_in_a_multirun_at_once(tmp_path):
    from hydrarl.errors import UserError

    with pytest.raises(UserError, match="trainer.resume=/x continues one run in its own directory; it cannot be part of a --multirun"):
        _preflight(["--multirun", "trainer.resume=/x", "seed=1,2"])


def test_preflight_of_a_search_makes_no_sweep_dir_and_leaves_the_store_to_the_sweeper(tmp_path):
    """The sweeper's own checks come first; a grid's preflight creates the store's schema once for its jobs."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _preflight(["--multirun", "+search=Pendulum/sac", f"logger.mlflow.tracking_uri={store}", f"hydra.sweep.dir={tmp_path / 'search'}"])
    assert list(tmp_path.iterdir()) == []
    _preflight(["--multirun", "env=Pendulum", "algorithm=sac", "seed=1,2", f"logger.mlflow.tracking_uri={store}",
                f"hydra.sweep.dir={tmp_path / 'grid'}"])
    made = {p.name for p in tmp_path.iterdir()}
    assert "mlflow.db" in made and "grid" not in made  # the grid's sweep dir is Hydra's to make


def test_a_grid_failure_is_recorded_by_its_reason_not_its_last_line(tmp_path):
    from hydrarl.launchers.grid_report import FAILED_FILE, record_failure

    error = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: the real reason\n"
             "\nDuring handling, the logger said:\n  something after it\n")
    record_failure(tmp_path, "0_Pendulum_sac", error)
    record_failure(tmp_path, "1_CartPole_sac", "algorithm=sac cannot act in env=CartPole")
    assert (tmp_path / FAILED_FILE).read_text().splitlines() == [
        "0_Pendulum_sac\tValueError: the real reason", "1_CartPole_sac\talgorithm=sac cannot act in env=CartPole"]
