"""Searches and grids as SLURM jobs on a real single-node cluster (tests/helpers/slurm_cluster.py), through
``hydra/launcher=submitit_slurm``: a 3-trial search whose trials are jobs (``sacct`` lists them) where a trial
cancelled with ``scancel`` is a failed trial and the search goes on, and a 2-job grid runs as a job array."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hydrarl.paths import TRAIN_SCRIPT
from hydrarl.sweep.components import open_storage, storage_url
from tests.helpers.cli import run_cli
from tests.helpers.compose import fast_overrides
from tests.helpers.slurm_cluster import SlurmCluster

SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=cpu", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.timeout_min=10", "logger=[]", "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=1"]
SEARCH = ["--multirun", "+search=Pendulum/sac", *SLURM, "hydra.sweeper.n_jobs=2", *fast_overrides("sac"), "algorithm.train_freq=4"]


def job_ids(log: str) -> dict[int, str]:
    """Trial number -> SLURM job id, from the sweeper's ``trial <n>: slurm job <id>`` lines."""
    return {int(n): job for n, job in re.findall(r"trial (\d+): slurm job (\d+)", log)}


def study_of(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="Pendulum-sac", storage=open_storage(storage_url(None, sweep_dir)))


def test_a_search_runs_its_trials_as_slurm_jobs_and_a_cancelled_one_fails_alone(slurm: SlurmCluster, tmp_path):
    """A 3-trial search on 2 workers whose trial 0 is cancelled with ``scancel`` while it runs: trials 1 and 2 run
    as jobs to their end (sacct: COMPLETED), trial 0 is a failed trial naming its job, the search goes on, lists the
    failure and exits 1."""
    sweep_dir, log = tmp_path / "search", tmp_path / "sweeper.log"
    args = [sys.executable, str(TRAIN_SCRIPT), *SEARCH, f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=3",
            "trainer.n_epochs=3"]
    with open(log, "w") as out:
        sweeper = subprocess.Popen(args, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while 0 not in job_ids(log.read_text()):
            assert sweeper.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        first = job_ids(log.read_text())[0]
        slurm.run("scancel", first)
        code = sweeper.wait(300)
    finally:
        if sweeper.poll() is None:
            sweeper.send_signal(signal.SIGKILL)
    output = log.read_text()
    assert code == 1, output[-3000:]  # a search with a failed trial lists it and exits 1, after every trial ran
    jobs = job_ids(output)
    assert sorted(jobs) == [0, 1, 2]
    assert [slurm.wait_finished(jobs[n]).state for n in range(3)] == ["CANCELLED", "COMPLETED", "COMPLETED"]
    trials = study_of(sweep_dir).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert f"slurm job {first} ended CANCELLED without a result" in trials[0].user_attrs["error"]
    assert all((sweep_dir / f"trial_{n:04d}" / "job.log").exists() for n in (1, 2))  # trial 0 may end before train.py starts
    assert "1 of 3 trials of this search failed" in output


def test_a_grid_runs_as_a_slurm_job_array(slurm: SlurmCluster, tmp_path):
    sweep_dir = tmp_path / "grid"
    done = run_cli(["--multirun", *SLURM, "env=Pendulum", "algorithm=ppo", "seed=1,2", "trainer.n_epochs=1",
                    f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert all((sweep_dir / f"{n}_Pendulum_ppo" / "trial_result.json").exists() for n in (0, 1))
    array = next(p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir() if p.name[0].isdigit())
    assert [slurm.wait_finished(f"{array}_{n}") for n in (0, 1)] == [(f"{array}_{n}", "COMPLETED", "0:0") for n in (0, 1)]


def test_squeue_tells_a_jobs_end_where_sacct_cannot(slurm: SlurmCluster):
    """The sweeper's fallback for clusters without job accounting (submitit would wait for ever there)."""
    from hydrarl.sweep.submitit_trials import GONE, slurm_end

    job = slurm.sbatch("--output=/dev/null", "--wrap=sleep 60")
    assert slurm_end(job) is None  # pending or running
    slurm.run("scancel", job)
    deadline = time.time() + 30
    while slurm_end(job) is None:
        assert time.time() < deadline, "squeue never showed the cancelled job's end"
        time.sleep(0.2)
    assert slurm_end(job) in ("CANCELLED", GONE)
    assert slurm_end("999999") == GONE  # a job SLURM does not know (any more)


def test_a_preempted_trial_job_checkpoints_and_comes_back_as_a_resume(tmp_path):
    """What submitit calls in a job that SLURM is about to pre-empt (or time out with re-queues left):
    train.py gets SIGTERM and writes its checkpoint; the re-queued submission resumes that run to its end.
    (SLURM's own re-queue is submitit's; it waits ~2 minutes before the job runs again, too long for CI.)"""
    import threading

    from hydrarl.sweep.submitit_trials import TrialCommand
    from hydrarl.training.jobs import Job

    run_dir = tmp_path / "trial_0000"
    overrides = ["env=Pendulum", "algorithm=sac", *SLURM[4:], *fast_overrides("sac"), "trainer.n_epochs=8", "seed=0"]
    command = TrialCommand(Job(overrides, run_dir))
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(first=command()))
    worker.start()
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last").exists():  # an epoch or more done
        assert worker.is_alive() and time.time() < deadline, (run_dir / "job.log").read_text()[-2000:]
        time.sleep(0.2)
    again = command.checkpoint()  # what submitit's USR2 handler does before it re-queues the job
    worker.join(60)
    assert not worker.is_alive() and outcome["first"].result is None  # stopped, no result: not a finished trial
    assert f"resume with trainer.resume={run_dir}" in (run_dir / "job.log").read_text()  # it checkpointed and said so
    resumed = again.function
    assert isinstance(resumed, TrialCommand) and f"trainer.resume={run_dir}" in resumed.job.overrides
    result = resumed().result
    assert result is not None and result["status"] == "completed" and result["epochs_run"] == 8
