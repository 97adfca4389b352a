"""The real servers of :mod:`tests.helpers.servers`: a PostgreSQL study that a second process shares (holding at most
two connections, heartbeats on: 64 sweeper processes fit in its ``max_connections``), and an MLflow tracking server
on PostgreSQL that keeps a run's metric and artifact and takes runs from two processes at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from hydrarl.trackers import RunRecord
from hydrarl.trackers.mlflow_tracker import ERROR_TAG, RESUMED_TAG, MlflowTracker
from tests.helpers.servers import create_database, mlflow_server, postgres_server

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeat_interval

# A sweeper process: joins study "shared", runs one trial long enough for a heartbeat, and reports what it saw.
SWEEPER = """
import json, sys, time, optuna, psycopg2
url, port = sys.argv[1], sys.argv[2]
storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
study = optuna.load_study(study_name="shared", storage=storage)
study.optimize(lambda trial: time.sleep(1.5) or trial.suggest_float("x", 0, 1), n_trials=1)
with psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", application_name="probe") as probe:
    with probe.cursor() as cursor:
        cursor.execute("select count(*) from pg_stat_activity where application_name = 'sweeper'")
        connections = cursor.fetchone()[0]
print(json.dumps({"trials": len(study.trials), "connections": connections}))
"""

# A training worker: the fluent API, as a user's script logs, into an experiment that exists already.
WORKER = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("concurrent")
with mlflow.start_run(run_name=sys.argv[2]):
    for step in range(20):
        mlflow.log_metric("loss", 1 / (step + 1), step=step)
"""


def python(script: str, *args: str, cwd: Path, **env: str) -> subprocess.Popen:
    """``script`` in a new process of this venv's Python, its output captured."""
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=cwd, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **env})


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> Iterator[str]:
    with postgres_server(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="module")
def tracking(postgres, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(the server's URI, its folder): MLflow on its own database of the PostgreSQL server."""
    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(root, create_database(postgres, "mlflow")) as uri:
        yield uri, root


def test_a_study_on_postgres_is_shared_with_a_second_process_that_holds_two_connections(postgres, tmp_path):
    storage = optuna.storages.RDBStorage(postgres, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    port = postgres.rpartition(":")[2].partition("/")[0]
    sweeper = python(SWEEPER, postgres, port, cwd=tmp_path, PGAPPNAME="sweeper")
    out, err = sweeper.communicate(timeout=60)
    assert sweeper.returncode == 0, err[-3000:]
    seen = json.loads(out.splitlines()[-1])
    assert seen["trials"] == 3  # the first process's two and its own
    assert 1 <= seen["connections"] <= 2  # SQLAlchemy's pool keeps two, the heartbeat thread adds none
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3


def test_the_mlflow_server_on_postgres_keeps_a_run_with_a_metric_and_an_artifact(tracking, tmp_path):
    uri, root = tracking
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("single")
    run = client.create_run(experiment, run_name="one")
    client.log_metric(run.info.run_id, "score", 1.5, step=3)
    (tmp_path / "note.txt").write_text("kept by the server")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    client.set_terminated(run.info.run_id)
    [found] = client.search_runs([experiment])
    assert found.info.run_name == "one" and found.info.status == "FINISHED" and found.data.metrics == {"score": 1.5}
    assert found.info.artifact_uri.startswith("mlflow-artifacts:")  # uploaded through the server, not to a path
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    back = client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path / "back"))
    assert Path(back).read_text() == "kept by the server"
    assert [p.name for p in (root / "artifacts").rglob("note.txt")] == ["note.txt"]


def test_two_processes_log_runs_at_once_into_an_experiment_made_first(tracking, tmp_path):
    uri, _ = tracking
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("concurrent")
    workers = [python(WORKER, uri, f"worker{i}", cwd=tmp_path) for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err[-3000:]
    runs = client.search_runs([experiment])
    assert sorted(r.info.run_name for r in runs) == ["worker0", "worker1"]
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 20
    assert client.search_runs(["0"]) == []  # nothing went to the Default experiment


def test_many_processes_reopen_one_run_at_once_without_a_duplicate_tag_error(tracking):
    """The shared parent run of a search: each sweeper that joins re-opens it; on the server the second writer of
    the same new tag is refused (a duplicate key), which must not end that sweeper."""
    uri, _ = tracking
    trackers = [MlflowTracker(uri, "reopened") for _ in range(8)]
    for tracker in trackers:
        tracker.start(RunRecord(Path("."), "setup", {}, {}))  # the experiment, its tags and a client each
    client = trackers[0].client
    runs = []
    for round_ in range(5):
        run_id = client.create_run(trackers[0].experiment_id, run_name=f"parent{round_}").info.run_id
        client.set_tag(run_id, ERROR_TAG, "an earlier end")
        client.set_terminated(run_id, "FAILED")
        runs.append(run_id)
        barrier = threading.Barrier(len(trackers))

        def reopen(tracker: MlflowTracker, run_id: str = run_id, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            tracker.start(RunRecord(Path("."), "parent", {}, {}, {"mlflow": run_id}))

        with ThreadPoolExecutor(len(trackers)) as pool:
            [job.result() for job in [pool.submit(reopen, tracker) for tracker in trackers]]  # raises as a sweeper would
    for run_id in runs:
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING" and run.data.tags.get(RESUMED_TAG) == "true" and ERROR_TAG not in run.data.tags
