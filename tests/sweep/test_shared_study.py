"""One search from several sweeper processes at once: a real PostgreSQL study and a real MLflow tracking server
on 127.0.0.1 (started here), real ``experiment/train.py --multirun +search=...`` sweepers and trials.

Three sweepers share one study: distinct trial numbers, the study's ``n_trials`` honoured over all of them, one
parent MLflow run for every trial, every run in the search's experiment (none in Default). A sweeper killed with
SIGKILL: its trial is found by its heartbeat and run again by a live sweeper within the grace period and one trial.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hydrarl.paths import TRAIN_SCRIPT
from hydrarl.sweep.components import open_storage
from hydrarl.sweep.shared import OWNER_ATTR, RETRY_ATTR, SURPLUS
from tests.helpers.compose import fast_overrides
from tests.helpers.servers import create_database, mlflow_server, postgres_server

STUDY = "shared-Pendulum-sac"
TRIAL = ["+search=Pendulum/sac", f"hydra.sweeper.study_name={STUDY}", "hydra.sweeper.n_jobs=1",
         "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=1", *fast_overrides("sac"), "algorithm.train_freq=4"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> dict[str, str]:
    """PostgreSQL (a database for the studies, one for MLflow) and an MLflow server on it, for this module."""
    work = tmp_path_factory.mktemp("servers")
    with postgres_server(work) as studies:
        with mlflow_server(work / "mlflow", create_database(studies, "mlflow")) as tracking:
            yield {"postgres": studies, "mlflow": tracking}


def sweeper(tmp_path: Path, name: str, storage: str, extra: list[str]) -> subprocess.Popen:
    """One sweeper process with its own sweep dir ``tmp_path/<name>``, output in ``<name>.log``."""
    log = open(tmp_path / f"{name}.log", "w")
    args = [sys.executable, str(TRAIN_SCRIPT), "--multirun", *TRIAL, f"hydra.sweep.dir={tmp_path / name}",
            f"hydra.sweeper.storage={storage}", *extra]
    return subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def finish(processes: dict[str, subprocess.Popen], tmp_path: Path, timeout: float) -> None:
    for name, process in processes.items():
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        assert code == 0, f"sweeper {name} exited {code}:\n{(tmp_path / f'{name}.log').read_text()[-3000:]}"


def test_three_sweepers_share_one_study_one_total_and_one_parent_run(servers, tmp_path):
    storage = create_database(servers["postgres"], "three")
    extra = ["hydra.sweeper.n_trials=5", "trainer.n_epochs=1", "logger=[mlflow]",
             f"logger.mlflow.tracking_uri={servers['mlflow']}", "logger.mlflow.experiment_name=shared-search"]
    processes = {name: sweeper(tmp_path, name, storage, extra) for name in ("a", "b", "c")}  # started together
    finish(processes, tmp_path, timeout=240)

    study = optuna.load_study(study_name=STUDY, storage=open_storage(storage))
    counted = [t for t in study.trials if t.user_attrs.get("stop_reason") != SURPLUS]
    assert len(counted) == 5 and all(t.state == TrialState.COMPLETE for t in counted)
    assert len({t.number for t in study.trials}) == len(study.trials)
    owners = {t.user_attrs[OWNER_ATTR].rsplit("/", 1)[-1] for t in counted}
    assert len(owners) >= 2, f"one process ran every trial: {owners}"  # they really shared the work

    client = MlflowClient(tracking_uri=servers["mlflow"])
    experiment = client.get_experiment_by_name("shared-search")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    assert len(children) == 5 and {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert parents[0].info.status == "FINISHED"
    assert not client.search_runs(["0"]), "a run landed in the Default experiment"


def test_a_killed_sweepers_trial_is_run_again_by_a_live_one(servers, tmp_path):
    storage = create_database(servers["postgres"], "killed")
    extra = ["hydra.sweeper.n_trials=3", "trainer.n_epochs=3", "logger=[]",
             "hydra.sweeper.heartbeat_seconds=1", "hydra.sweeper.grace_seconds=3"]
    doomed = sweeper(tmp_path, "doomed", storage, extra)
    deadline = time.time() + 120
    while True:  # wait for the doomed sweeper's trial to run
        assert doomed.poll() is None and time.time() < deadline, (tmp_path / "doomed.log").read_text()[-3000:]
        try:
            trials = optuna.load_study(study_name=STUDY, storage=open_storage(storage)).trials
        except KeyError:  # no study yet
            trials = []
        if any(t.state == TrialState.RUNNING for t in trials):
            break
        time.sleep(0.2)
    live = sweeper(tmp_path, "live", storage, extra)
    time.sleep(2)
    os.killpg(doomed.pid, signal.SIGKILL)  # the sweeper and its trial's process
    killed_at = time.time()
    doomed.wait()
    finish({"live": live}, tmp_path, timeout=180)

    study = optuna.load_study(study_name=STUDY, storage=open_storage(storage))
    by_number = {t.number: t for t in study.trials}
    stale = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(stale) == 1 and "doomed" in stale[0].user_attrs[OWNER_ATTR]
    retry = next(t for t in study.trials if t.system_attrs.get(RETRY_ATTR) == stale[0].number)
    assert retry.state == TrialState.COMPLETE and "live" in retry.user_attrs[OWNER_ATTR]
    assert retry.params == stale[0].params
    # Found within the grace period, and started once the live sweeper's own trial (its one worker) was done.
    one_trial = max((t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials
                    if t.state == TrialState.COMPLETE and t.number != retry.number)
    assert retry.datetime_start.timestamp() - killed_at <= 3 + one_trial + 5, (retry.datetime_start, killed_at, one_trial)
    counted = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(counted) == 3, {n: t.state for n, t in by_number.items()}
    assert "a retry of trial" in (tmp_path / "live.log").read_text()


START_RUN = """
import sys, time
from pathlib import Path
from hydrarl.trackers import RunRecord
from hydrarl.trackers.mlflow_tracker import MlflowTracker
uri, experiment, name, at = sys.argv[1:5]
time.sleep(max(0.0, float(at) - time.time()))  # every process starts its run at the same instant
tracker = MlflowTracker(uri, experiment, name)
tracker.start(RunRecord(Path("."), name, {}, {}))
tracker.finish("completed")
"""


def test_runs_started_at_once_in_a_new_experiment_all_land_in_it(servers, tmp_path):
    """Four fresh processes start runs at the same instant in an experiment no one has made yet (MLflow's own
    ``set_experiment`` puts most such runs in Default, without an error): each run is in the experiment."""
    at = str(time.time() + 8)  # after the four interpreters have imported MLflow
    processes = [subprocess.Popen([sys.executable, "-c", START_RUN, servers["mlflow"], "fresh-at-once", f"run{i}", at],
                                  cwd=tmp_path, stderr=subprocess.PIPE, text=True) for i in range(4)]
    for process in processes:
        assert process.wait(60) == 0, process.stderr.read()[-2000:]
    client = MlflowClient(tracking_uri=servers["mlflow"])
    runs = client.search_runs([client.get_experiment_by_name("fresh-at-once").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["run0", "run1", "run2", "run3"]
    assert not client.search_runs(["0"], "attributes.run_name LIKE 'run%'")
