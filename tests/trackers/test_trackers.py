"""The tracker interface: CSV and TensorBoard sinks, MLflow experiments (shared stores, their mark and runs view)."""

import csv
import json

import pytest

from hydrarl.errors import UserError
from hydrarl.trackers import RunRecord, make_trackers
from hydrarl.trackers.csv_tracker import CsvTracker
from tests.helpers.compose import compose_cfg


def test_csv_gains_a_column_when_a_metric_first_appears(tmp_path):
    tracker = CsvTracker(tmp_path / "progress.csv")
    tracker.log_metrics({"eval/mean_reward": -3.0}, step=100)
    tracker.log_metrics({"eval/mean_reward": -2.0, "train/loss": 0.5}, step=200)
    tracker.log_metrics({"eval/mean_reward": -1.0, "train/loss": 0.25}, step=300)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["100", "200", "300"]
    assert [r["train/loss"] for r in rows] == ["", "0.5", "0.25"]


def test_tensorboard_writes_scalars_readable_by_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trackers = make_trackers(compose_cfg(["logger=[tensorboard]"]).logger, tmp_path)
    trackers.start(RunRecord(tmp_path, "r", {}, {}))
    trackers.log_metrics({"eval/success_rate": 0.5}, step=1000)
    trackers.log_metrics({"eval/success_rate": 0.75}, step=2000)
    trackers.finish("completed")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/success_rate")] == [(1000, 0.5), (2000, 0.75)]


def test_unknown_tracker_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="available: mlflow, comet, csv, tensorboard"):
        make_trackers({"wandb": {}}, tmp_path)


def test_parallel_workers_can_open_one_new_sqlite_store(tmp_path):
    """Four processes open the same fresh store at once (as parallel sweep workers do); all get a run."""
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = (
        "import sys; from pathlib import Path; import hydrarl\n"
        "from hydrarl.trackers import RunRecord\n"
        "from hydrarl.trackers.mlflow_tracker import MlflowTracker\n"
        "t = MlflowTracker(sys.argv[1], 'Parallel'); t.start(RunRecord(Path('.'), sys.argv[2], {'a': 1}, {}))\n"
        "t.log_metrics({'x': 1.0}, 1); t.finish('completed')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, uri, f"w{i}"], stderr=subprocess.PIPE, text=True) for i in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("Parallel").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["w0", "w1", "w2", "w3"]
    assert client.get_experiment_by_name("Parallel").tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_experiment_is_marked_as_training_runs_even_when_an_older_version_made_it(tmp_path, caplog):
    """MLflow's mark for training runs, and our runs view (hydrarl.trackers.mlflow_view), also on old experiments;
    the run's end names the link to the view."""
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from hydrarl.trackers.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("Old")  # as versions before the tag made it
    assert "mlflow.experimentKind" not in client.get_experiment_by_name("Old").tags
    for name in ("Old", "New"):
        tracker = MlflowTracker(uri, name)
        tracker.start(RunRecord(Path("."), "r", {}, {}))
        with caplog.at_level("INFO", logger="hydrarl"):
            tracker.finish("completed")
        experiment = client.get_experiment_by_name(name)
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        assert json.loads(experiment.tags["mlflow.sharedViewState.hydrarl-runs"])["selectedColumns"][:4] == [
            "metrics.`score`", "tags.`env`", "tags.`algorithm`", "tags.`seed`"]
        assert caplog.messages[-1] == (f"runs in MLflow: mlflow ui --backend-store-uri {uri}, then http://127.0.0.1:5000/#/"
                                       f"experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
                                       "&viewStateShareKey=hydrarl-runs")


def test_a_relative_sqlite_store_keeps_artifacts_beside_it_in_the_working_directory(tmp_path, monkeypatch):
    """``sqlite:///mlflow.db`` (what the error messages suggest) opens in the working directory, and new experiments
    keep their artifacts in its ``mlruns`` there."""
    from mlflow import MlflowClient

    from hydrarl.trackers.mlflow_tracker import ensure_experiment

    monkeypatch.chdir(tmp_path)
    client = MlflowClient("sqlite:///mlflow.db")
    experiment = client.get_experiment(ensure_experiment(client, "sqlite:///mlflow.db", "relative store"))
    assert experiment.artifact_location == (tmp_path / "mlruns" / "relative_store").as_uri()
    assert (tmp_path / "mlflow.db").exists()
