"""Runs left RUNNING by a dead process: ``close_stale_runs`` ends those whose run directory no live process
holds, and ``experiment/runs.py close-stale`` is its command; a failed start or a failure is never left
RUNNING or silent."""

import os
import shutil

import pytest
from mlflow.tracking import MlflowClient

from hydrarl.analysis.maintenance import main as runs_main
from hydrarl.locks import DirLock
from hydrarl.trackers import RunRecord, make_trackers
from hydrarl.trackers.mlflow_tracker import CLOSED_TAG, ERROR_TAG, MlflowTracker, close_stale_runs
from tests.helpers.compose import compose_cfg
from tests.helpers.disks import readonly_dir


def _start(uri: str, name: str, run_dir=None, experiment: str = "Stale", resume: str | None = None) -> MlflowTracker:
    tracker = MlflowTracker(uri, experiment)
    tags = {"run_dir": str(run_dir)} if run_dir else {}
    tracker.start(RunRecord(run_dir or os.getcwd(), name, {}, tags, {"mlflow": resume} if resume else {}))
    return tracker


def test_only_runs_whose_run_directory_no_live_process_holds_are_closed(tmp_path, tracking_uri):
    root = tmp_path / "runs"
    dirs = {name: root / name for name in ("live", "dead", "gone", "done", "readonly")}
    for directory in dirs.values():
        directory.mkdir(parents=True)
    with readonly_dir(dirs["readonly"]):  # no lock file can be made there: judged by asking, not taking, the lock
        _close_only_stale_runs(tracking_uri, root, dirs)


def _close_only_stale_runs(tracking_uri, root, dirs):
    live_lock = DirLock(dirs["live"], "run directory").acquire()  # a live run holds its directory
    trackers = {name: _start(tracking_uri, name, directory) for name, directory in dirs.items()}
    trackers["untagged"] = _start(tracking_uri, "untagged")  # no run_dir tag: nothing to decide by
    trackers["elsewhere"] = _start(tracking_uri, "elsewhere", root.parent / "other" / "run", experiment="Other")
    trackers["done"].finish("completed")
    shutil.rmtree(dirs["gone"])
    lines = []

    closed = close_stale_runs(tracking_uri, under=root, report=lines.append)
    assert sorted(closed) == sorted(trackers[n].run_id for n in ("dead", "gone", "readonly"))
    assert len(lines) == 3 and f"closed {trackers['dead'].run_id} (dead) as KILLED: no live process holds {dirs['dead']}" in lines
    client = MlflowClient(tracking_uri)
    status = {name: client.get_run(t.run_id).info.status for name, t in trackers.items()}
    assert status == {"live": "RUNNING", "dead": "KILLED", "gone": "KILLED", "done": "FINISHED", "readonly": "KILLED",
                      "untagged": "RUNNING", "elsewhere": "RUNNING"}
    assert "no live process holds its run directory" in client.get_run(trackers["dead"].run_id).data.tags[CLOSED_TAG]
    assert not dirs["gone"].exists()  # closing does not bring a deleted run directory back

    assert close_stale_runs(tracking_uri) == [trackers["elsewhere"].run_id]  # every experiment, anywhere
    live_lock.release()  # the live run's process is gone
    assert close_stale_runs(tracking_uri) == [trackers["live"].run_id]

    # A closed run that is resumed is RUNNING again, without the tag that said it was closed.
    resumed = _start(tracking_uri, "dead", dirs["dead"], resume=trackers["dead"].run_id)
    again = client.get_run(resumed.run_id)
    assert (again.info.status, CLOSED_TAG in again.data.tags) == ("RUNNING", False)


def test_a_store_that_does_not_exist_is_not_created(tmp_path):
    assert close_stale_runs(f"sqlite:///{tmp_path}/none/mlflow.db") == []
    assert not (tmp_path / "none").exists()


def test_the_close_stale_command_reports_each_run_and_refuses_bad_input(tmp_path, tracking_uri, capsys):
    (tmp_path / "dead").mkdir()
    tracker = _start(tracking_uri, "dead-run", tmp_path / "dead")
    assert runs_main(["close-stale", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"looking for stale RUNNING runs in {tracking_uri}",
                   f"closed {tracker.run_id} (dead-run) as KILLED: no live process holds {tmp_path / 'dead'}",
                   "1 stale run(s) closed as KILLED"]
    assert runs_main(["close-stale", "--tracking-uri", tracking_uri, "--under", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 stale run(s) closed as KILLED"

    missing = f"sqlite:///{tmp_path}/nowhere/mlflow.db"
    assert runs_main(["close-stale", "--tracking-uri", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no MLflow store at {tmp_path}/nowhere/mlflow.db") and err.count("\n") == 1
    assert runs_main(["close-stale", "--tracking-uri", tracking_uri, "--under", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: --under {tmp_path / 'nope'}: no such directory (give a run or sweep directory).\n"


def test_a_tracker_that_fails_to_start_leaves_no_run_running(tmp_path, tracking_uri):
    cfg = compose_cfg(["logger=[mlflow,tensorboard]", f"logger.mlflow.tracking_uri={tracking_uri}",
                       "logger.mlflow.experiment_name=Start"])
    with readonly_dir(tmp_path / "ro") as run_dir:
        trackers = make_trackers(cfg.logger, run_dir)
        with pytest.raises(OSError):
            trackers.start(RunRecord(run_dir, "r", {}, {}))
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("Start").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags[ERROR_TAG].startswith("tensorboard tracker failed to start: ")
