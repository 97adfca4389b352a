"""Nothing lost, nothing silent: real sweepers (``experiment/train.py --multirun +search=...``) with real
train.py trials. A sweeper killed with SIGKILL takes its trial's process with it; a second sweeper on a
live sweep dir is refused; the re-run adopts the killed trial (same number, resumed in its directory) and
reaches n_trials with no configuration run twice; bad settings or spaces end before anything is recorded;
a search whose trials failed lists them and exits 1."""

from __future__ import annotations

import os
import signal
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
        "trainer.n_test_rollouts=1", *fast_overrides("sac")]


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


@pytest.mark.parametrize("bad, says", [  # (empty, inverted and log ranges: test_sweep_runner, in seconds)
    ("hydra.sweeper.n_trials=0", "error: hydra.sweeper.n_trials=0 is not allowed: an integer >= 1."),
    ("algorithm.gama=interval(0.9,0.99)", "error: search space: unknown config key 'algorithm.gama'. Keys under algorithm:"),
])
def test_bad_settings_or_space_exit_2_before_anything_is_recorded(tmp_path, tracking_uri, bad, says):
    from mlflow.tracking import MlflowClient

    sweep_dir = tmp_path / "search"
    proc = run_cli(["--multirun", *TINY, "logger=[mlflow]", f"logger.mlflow.tracking_uri={tracking_uri}", f"hydra.sweep.dir={sweep_dir}", bad],
                   cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()  # (MLflow may log that it created the store's tables)
    assert lines[-1].startswith(says) and [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert "Traceback" not in proc.stderr
    assert not sweep_dir.exists() or not any(sweep_dir.iterdir())  # (the command line's check may make it, empty)
    client = MlflowClient(tracking_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_search_whose_trials_all_failed_lists_them_and_exits_1(tmp_path):
    sweep_dir = tmp_path / "search"
    proc = run_cli(["--multirun", *TINY, f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=1",
                    "algorithm.policy_kwargs.net_arch=choice([-5])"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    reason = "RuntimeError: Trying to create tensor with negative dimension -5"
    tail = proc.stderr.strip().splitlines()[-2:]
    assert tail[0] == "error: 1 of 1 trials of this search failed (the others ran to their end and are recorded):"
    assert tail[1].startswith(f"  trial 0: {reason}") and tail[1].endswith(f"({sweep_dir / 'trial_0000' / 'job.log'})")
    assert f"trial 0 failed: {reason}" in proc.stdout  # when it happened, too (Hydra logs to stdout)
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"FAIL": 1} and results["failed_trials"][0]["reason"].startswith(reason)
