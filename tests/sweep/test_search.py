"""Searches through Hydra with real trials: a 4-trial search on 2 workers (results files, MLflow
parent and child runs), its resume by re-running the command, and pruning from inside the Trainer."""

import optuna
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hydrarl.sweep.components import open_storage
from hydrarl.sweep.reporter import PRUNER_ATTR, TrialReporter
from hydrarl.training.train import run
from tests.helpers.cli import run_cli
from tests.helpers.compose import compose_cfg, fast_overrides

TINY = ["trainer.n_epochs=2", "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=1", *fast_overrides("sac")]


def test_four_trial_search_on_two_workers_then_resume(tmp_path, tracking_uri):
    sweep_dir = tmp_path / "search"
    args = ["--multirun", "+search=Pendulum/sac", f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
            f"logger.mlflow.tracking_uri={tracking_uri}", "algorithm.gamma=choice(0.9,0.99)", *TINY]
    proc = run_cli(args, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"COMPLETE": 4}
    assert results["best_params"]["algorithm.gamma"] in (0.9, 0.99)
    assert set(results["best_params"]) >= {"algorithm.learning_rate", "algorithm.batch_size"}
    best_line = (sweep_dir / "best_overrides.txt").read_text().split()
    assert "+search=Pendulum/sac" in best_line and f"algorithm.gamma={results['best_params']['algorithm.gamma']}" in best_line
    assert (sweep_dir / "best_config.yaml").exists() and (sweep_dir / "plots" / "history.png").exists()
    assert sorted(p.name for p in sweep_dir.glob("trial_*")) == [f"trial_{i:04d}" for i in range(4)]

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "search-Pendulum-sac"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    assert parent.info.status == "FINISHED" and "optimization_results.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    # The same command with a larger total runs only the missing trials, numbered on.
    again = run_cli([a.replace("n_trials=4", "n_trials=5") for a in args], cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())["trials"] == {"COMPLETE": 5}
    assert (sweep_dir / "trial_0004").is_dir() and not (sweep_dir / "trial_0005").exists()
    runs = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    assert [r.info.run_id for r in runs if r.info.run_name == "search-Pendulum-sac"] == [parent.info.run_id]
    assert len([r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]) == 5


def test_the_trainer_reports_each_epoch_and_stops_when_pruned(tmp_path):
    storage = f"journal:{tmp_path / 'journal.log'}"
    study = optuna.create_study(study_name="p", storage=open_storage(storage), direction="maximize")
    study.set_user_attr(PRUNER_ATTR, {"_target_": "optuna.pruners.ThresholdPruner", "lower": 1e9})  # prunes any value
    trial = study.ask()
    cfg = compose_cfg(["env=Pendulum", "algorithm=sac", "seed=0", "logger=[]", "trainer.progress_bar=false", *TINY,
                       "trainer.n_epochs=5", f"trial={{storage:'{storage}',study_name:p,trial_id:{trial._trial_id},number:0,report:true}}"])
    result = run(cfg, tmp_path / "run", TrialReporter.from_config(cfg.trial))  # as the job's task builds it
    assert (result.status, result.epochs_run, result.num_timesteps) == ("pruned", 1, 200)
    frozen = study.trials[0]
    assert frozen.state == TrialState.RUNNING and list(frozen.intermediate_values) == [1]
    assert frozen.intermediate_values[1] == result.metrics["eval/mean_reward"]


def test_unknown_search_preset_lists_the_presets(tmp_path):
    proc = run_cli(["--multirun", "+search=Pendulum/nope", f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "search=Pendulum/nope is unknown" in proc.stderr and "Pendulum/sac" in proc.stderr
