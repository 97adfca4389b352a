"""Nothing lost, nothing silent: real sweepers (``experiment/train.py --multirun +search=...``) with real
train.py trials. A sweeper killed with SIGKILL takes its trial's process with it; a second sweeper on a
live sweep dir is refused; the re-run adopts the killed trial (same number, resumed in its directory) and
reaches n_trials with no configuration run twice; bad settings or spaces end before anything is recorded;
a search whose trials failed lists them and exits 1."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hydrarl.locks import is_locked
from hydrarl.paths import TRAIN_SCRIPT
from hydrarl.sweep.components import open_storage, storage_url
from tests.helpers.cli import run_cli
from tests.helpers.compose import fast_overrides

TINY = ["+search=Pendulum/sac", "logger=[]", "hydra.sweeper.n_jobs=1", "trainer.n_epochs=3", "trainer.eval_after_n_steps=200",
        "trainer.n_test_rollouts=1", *fast_overrides("sac"),
        "algorithm.train_freq=4"]  # a quarter of the gradient steps (the preset draws nets and batches up to 256): nothing here depends on them


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def processes_of(run_dir: Path) -> list[int]:
    """The live (not zombie) processes whose command line runs in ``run_dir`` (a trial's train.py)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"hydra.run.dir={run_dir}".encode() in (proc / "cmdline").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def study_of(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="Pendulum-sac", storage=open_storage(storage_url(None, sweep_dir)))


def test_a_killed_sweepers_trial_dies_with_it_and_the_rerun_adopts_it(tmp_path):
    sweep_dir = tmp_path / "search"
    args = ["--multirun", *TINY, f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=1"]
    first = subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trial_dir = sweep_dir / "trial_0000"
    wait_for(lambda: (trial_dir / "checkpoints" / "last" / "trainer_state.json").exists(), 240, "the first epoch's checkpoint")
    (pid,) = processes_of(trial_dir)
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: not processes_of(trial_dir), 5, f"trial process {pid} to die with its sweeper")
    assert [t.state for t in study_of(sweep_dir).trials] == [TrialState.RUNNING]

    rerun = subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    wait_for(lambda: is_locked(sweep_dir), 120, "the re-run to take the sweep dir")
    second = run_cli(args, cwd=tmp_path, timeout=120)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [f"error: the search {sweep_dir} is in use by a live process (pid {rerun.pid} on "
                                                  f"{os.uname().nodename}); wait for it to end, or stop it first."]
    output, _ = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, output[-3000:]
    assert "trial 0 was left running by a sweeper that died; adopted under its number: resumed from its checkpoint" in output

    # The study reaches its n_trials=1 with the adopted trial: its configuration is not run again as a new trial.
    (trial,) = study_of(sweep_dir).trials
    assert (trial.number, trial.state, trial.user_attrs["epochs_run"]) == (0, TrialState.COMPLETE, 3)
    starts = [line for line in (trial_dir / "job.log").read_text().splitlines() if line.startswith("$ ")]
    assert len(starts) == 2 and f"trainer.resume={trial_dir}" in starts[1].split()
    assert [p.name for p in sweep_dir.glob("trial_*")] == ["trial_0000"]


def running_runs(tracking_uri: str) -> dict[str, str]:
    """The RUNNING runs of a sqlite MLflow store: run id -> its ``run_dir`` tag (read with sqlite, nothing created)."""
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if not db.exists():
        return {}
    with sqlite3.connect(db) as con:
        try:
            rows = con.execute("select r.run_uuid, t.value from runs r left join tags t on t.run_uuid = r.run_uuid "
                               "and t.key = 'run_dir' where r.status = 'RUNNING'").fetchall()
        except sqlite3.OperationalError:  # no schema yet
            return {}
    return dict(rows)


def test_a_killed_sweepers_mlflow_runs_are_closed_when_the_rerun_runs_its_trial_again(tmp_path, tracking_uri):
    """Killed before its trial's first checkpoint: the re-run runs the trial again in its directory (a new MLflow
    run) and ends the dead one as KILLED, so no run of the store is left RUNNING."""
    from mlflow.tracking import MlflowClient

    sweep_dir, trial_dir = tmp_path / "search", tmp_path / "search" / "trial_0000"
    args = ["--multirun", *TINY, "logger=[mlflow]", f"logger.mlflow.tracking_uri={tracking_uri}", f"hydra.sweep.dir={sweep_dir}",
            "hydra.sweeper.n_trials=1"]
    first = subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: str(trial_dir) in running_runs(tracking_uri).values(), 240, "the trial's MLflow run")
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: not processes_of(trial_dir), 5, "the trial's process to die with its sweeper")
    shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)  # (killed before its first checkpoint, however fast it was)
    (dead,) = [run for run, run_dir in running_runs(tracking_uri).items() if run_dir == str(trial_dir)]

    rerun = run_cli(args, cwd=tmp_path, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert running_runs(tracking_uri) == {}
    assert "Warning" not in rerun.stderr  # (a one-trial study's plots warned of their scales)
    assert "trial 0 was left running by a sweeper that died; adopted under its number: run again" in rerun.stdout
    assert "1 MLflow run(s) left RUNNING by a sweeper that died closed as KILLED" in rerun.stdout
    client = MlflowClient(tracking_uri)
    assert client.get_run(dead).info.status == "KILLED"
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], f"tags.run_dir = '{trial_dir}'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]  # the trial's new run, in its old directory


# One of each kind here (a setting, the space's values); every bad setting and space of the bad-input campaign
# (tests/faults) is checked the same way there, and the rules themselves in test_sweep_runner, in-process.
@pytest.mark.parametrize("bad, says", [
    ("algorithm.gamma=interval(0.9,1.5)", "error: search space: algorithm.gamma=1.5 is not allowed: a number in [0, 1]."),
    ("hydra.sweeper.sampler.name=nope", "error: hydra.sweeper.sampler.name=nope is unknown; one of tpe, random"),
])
def test_bad_settings_or_space_exit_2_before_anything_is_recorded(tmp_path, tracking_uri, bad, says):
    sweep_dir = tmp_path / "search"
    proc = run_cli(["--multirun", *TINY, "logger=[mlflow]", f"logger.mlflow.tracking_uri={tracking_uri}", f"hydra.sweep.dir={sweep_dir}", bad],
                   cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()  # one line: no Optuna "study created", no MLflow "creating tables"
    assert len(lines) == 1 and lines[0].startswith(says), proc.stderr
    assert not sweep_dir.exists() or not any(sweep_dir.iterdir())  # (the command line's check may make it, empty)
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists()  # the MLflow store is made once the checks pass


def test_a_search_whose_trials_all_failed_lists_them_and_exits_1(tmp_path):
    sweep_dir = tmp_path / "search"
    proc = run_cli(["--multirun", *TINY, f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=1",
                    "algorithm.policy_kwargs.net_arch=choice([-5])"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    reason = "error: algorithm.policy_kwargs={'net_arch': [-5]} cannot build the policy"  # (the agent factory's refusal)
    tail = proc.stderr.strip().splitlines()[-2:]
    assert tail[0] == "error: 1 of 1 trials of this search failed (the others ran to their end and are recorded):"
    assert tail[1].startswith(f"  trial 0: {reason}") and tail[1].endswith(f"({sweep_dir / 'trial_0000' / 'job.log'})")
    assert f"trial 0 failed: {reason}" in proc.stdout  # when it happened, too (Hydra logs to stdout)
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"FAIL": 1} and results["failed_trials"][0]["reason"].startswith(reason)
