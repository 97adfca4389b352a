"""A real single-node SLURM cluster with job accounting (tests/helpers/slurm_cluster.py: slurmdbd on MariaDB)
runs batch jobs, job arrays and submitit jobs: plain ``sacct`` shows each job's state and exit code, array tasks
by their array ids, ``scancel`` ends a running job as CANCELLED, submitit (which polls that ``sacct``) returns a
job's value, and raises for a job that failed or that SLURM ended."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.slurm_cluster import SlurmCluster, SlurmUnavailable, cluster_pids, slurm_cluster


@pytest.fixture
def executor(slurm: SlurmCluster, tmp_path: Path) -> Any:
    """A submitit SLURM executor on the cluster's partition, one CPU a job."""
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(slurm_partition=slurm.partition, cpus_per_task=1, timeout_min=5)
    return executor


def wait_running(slurm: SlurmCluster, *job_ids: str, timeout_s: float = 15.0) -> None:
    """Wait until every one of ``job_ids`` is RUNNING at the same time."""
    deadline, states = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        states = [slurm.run("squeue", "--noheader", "--format=%T", f"--jobs={job}").stdout.strip() for job in job_ids]
        if states == ["RUNNING"] * len(job_ids):
            return
        time.sleep(0.1)
    raise AssertionError(f"jobs {job_ids} not all running after {timeout_s}s: {states}")


def test_batch_job_completes_and_sacct_shows_it(slurm: SlurmCluster) -> None:
    job = slurm.sbatch("--output=hi-%j.out", "--wrap=echo hi")
    assert slurm.wait_finished(job) == (job, "COMPLETED", "0:0")
    assert (slurm.workdir / f"hi-{job}.out").read_text() == "hi\n"


def test_failing_job_is_failed_with_its_exit_code(slurm: SlurmCluster) -> None:
    job = slurm.sbatch("--output=/dev/null", "--wrap=exit 3")
    assert slurm.wait_finished(job) == (job, "FAILED", "3:0")


def test_two_one_cpu_jobs_run_at_once_and_scancel_ends_them(slurm: SlurmCluster) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs for 2 one-CPU jobs at once")
    jobs = [slurm.sbatch("--output=/dev/null", "--wrap=sleep 60") for _ in range(2)]
    wait_running(slurm, *jobs)
    slurm.run("scancel", *jobs)
    assert [slurm.wait_finished(job).state for job in jobs] == ["CANCELLED", "CANCELLED"]


def test_array_tasks_are_in_sacct_by_array_ids(slurm: SlurmCluster) -> None:
    array = slurm.sbatch("--output=/dev/null", "--array=0-1", "--wrap=exit $SLURM_ARRAY_TASK_ID")
    assert slurm.wait_finished(f"{array}_0") == (f"{array}_0", "COMPLETED", "0:0")
    assert slurm.wait_finished(f"{array}_1") == (f"{array}_1", "FAILED", "1:0")
    assert sorted(slurm.sacct(array)) == [(f"{array}_0", "COMPLETED", "0:0"), (f"{array}_1", "FAILED", "1:0")]
    # As submitit asks (with its header; steps too, which it ignores).
    out = slurm.run("sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", array).stdout.splitlines()
    assert out[0] == "JobID|State|NodeList"
    assert {f"{array}_0|COMPLETED|localhost", f"{array}_1|FAILED|localhost"} <= set(out[1:])


def test_sacct_shows_pending_jobs(slurm: SlurmCluster) -> None:
    """A job that is not started at once gets its line when slurmctld next tells slurmdbd: within ~5 s."""
    job = slurm.sbatch("--output=/dev/null", "--begin=now+1hour", "--wrap=true")
    deadline = time.monotonic() + 15
    while not slurm.sacct(job) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slurm.sacct(job) == [(job, "PENDING", "0:0")]
    slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    assert slurm.wait_finished(job) == (job, "COMPLETED", "0:0")


def test_submitit_job_returns_its_value(executor: Any) -> None:
    job = executor.submit(os.getenv, "SLURM_JOB_ID")
    assert job.result() == job.job_id


def test_submitit_job_that_raises_is_a_failed_job_error(executor: Any) -> None:
    from submitit.core.utils import FailedJobError

    job = executor.submit(int, "not a number")
    with pytest.raises(FailedJobError, match="ValueError: invalid literal for int"):
        job.result()


def test_submitit_array_task_cancelled_by_slurm_raises_uncompleted_job_error(slurm: SlurmCluster, executor: Any) -> None:
    """As hydra-submitit-launcher submits a grid (an array) and collects it: a task that SLURM ended wrote no
    result, and its ``result()`` raises UncompletedJobError (not its subclass FailedJobError) once sacct says
    CANCELLED, while the other task's result is there."""
    from submitit.core.utils import UncompletedJobError

    done, cancelled = executor.map_array(time.sleep, [0, 60])
    wait_running(slurm, cancelled.job_id)
    cancelled.cancel()
    cancelled._results_timeout_s = 1  # submitit waits 15 s for the result file of a job it knows has ended
    assert done.result() is None
    with pytest.raises(UncompletedJobError, match=r"has not produced any output \(state: CANCELLED") as raised:
        cancelled.result()
    assert type(raised.value) is UncompletedJobError


def test_cluster_stops_every_process_it_started(tmp_path: Path) -> None:
    try:
        with slurm_cluster(tmp_path / "slurm") as cluster:
            job = cluster.sbatch("--output=/dev/null", "--wrap=sleep 60")
            wait_running(cluster, job)
            running = cluster_pids(tmp_path / "slurm" / "slurm.conf")
            daemons = cluster.daemons
    except SlurmUnavailable as reason:
        pytest.skip(str(reason))
    # munged, mariadbd, slurmdbd, slurmctld (+ slurmscriptd), slurmd, slurmstepd, the job
    assert len(running) >= 7
    assert all(daemon.poll() is not None for daemon in daemons)
    assert cluster_pids(tmp_path / "slurm" / "slurm.conf") == []
    assert not (tmp_path / "slurm" / "mariadb").exists()
