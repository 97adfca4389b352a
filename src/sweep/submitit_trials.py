"""A search's trials as submitit jobs: SLURM jobs under ``hydra/launcher=submitit_slurm``, or submitit's local
processes under ``hydra/launcher=submitit_local`` (hydra-submitit-launcher's two launchers, extra ``slurm``).

The sweeper stays where it was started and keeps its asynchronous loop: each of its ``n_jobs`` workers submits one
trial job (``experiment/train.py`` in the allocation, output in the trial's ``job.log``) and polls it, so a trial
that ends frees its slot at once; there is no batch barrier. The launcher's settings (``partition``,
``cpus_per_task``, ``timeout_min``, ``mem_gb``, ``additional_parameters`` ...) become the jobs' resources, as
hydra-submitit-launcher maps them for a grid.

What a job's end means for its trial:

- the job ran train.py: its result decides, as for a local trial (completed, pruned, early stopped, failed);
- SLURM ended the job without a result (``scancel``, a node failure, the time limit without requeue): a failed
  trial, its reason naming the job and its state; the search goes on;
- SLURM pre-empts the job, or its time limit comes with ``max_num_timeout`` > 0: submitit's signal reaches the
  job ``signal_delay_s`` before; :class:`TrialCommand` stops train.py with SIGTERM (it writes a checkpoint) and
  the job is re-queued with ``trainer.resume`` in the same run directory; the trial stays RUNNING meanwhile;
- the sweeper stops (Ctrl-C, an error): it cancels its jobs. A SIGKILLed sweeper cannot; its jobs' trials are
  ended by the study once their heartbeats stop, and their runs stop at the next epoch (``TrialReporter``).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from hydrarl.sweep.trials import TrialJob
from hydrarl.training.jobs import Job, JobOutcome, TrainProcess, run_job

log = logging.getLogger("hydrarl.sweep")

LAUNCHERS = {  # hydra-submitit-launcher's launchers -> submitit's cluster
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher": "slurm",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher": "local",
}
# The launcher's keys that submitit's AutoExecutor takes without a cluster prefix (its BaseQueueConf).
COMMON_KEYS = ("timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name", "stderr_to_stdout")
STOP_SECONDS = 60  # how long a pre-empted job waits for train.py's checkpoint
GONE = "gone from squeue"  # a job SLURM no longer lists: ended longer ago than MinJobAge
ENDED_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                "SPECIAL_EXIT", "REVOKED"}


def cluster_of(launcher: dict[str, Any] | None) -> str | None:
    """``slurm`` or ``local`` when the search's ``hydra.launcher`` is a submitit one, else None (trials run as
    the sweeper's own subprocesses)."""
    return LAUNCHERS.get((launcher or {}).get("_target_"))


def make_executor(launcher: dict[str, Any], sweep_dir: Path):
    """A submitit executor with the launcher's settings (``hydra.launcher``, resolved), its files in
    ``<sweep dir>/.submitit/<job id>``."""
    import submitit  # the slurm extra: only searches that use it import it

    cluster = cluster_of(launcher)
    params = {k: v for k, v in launcher.items() if k not in ("_target_", "submitit_folder") and v is not None}
    init = {f"{cluster}_max_num_timeout": params.pop("max_num_timeout")} if "max_num_timeout" in params else {}
    executor = submitit.AutoExecutor(folder=Path(sweep_dir) / ".submitit" / "%j", cluster=cluster, **init)
    executor.update_parameters(**{k if k in COMMON_KEYS else f"{cluster}_{k}": v for k, v in params.items()})
    return executor


class TrialCommand:
    """What a trial's job runs: ``experiment/train.py`` for one :class:`~hydrarl.training.jobs.Job`, returning its
    JobOutcome. Submitit calls :meth:`checkpoint` when the job is about to be pre-empted or timed out: train.py
    gets SIGTERM (it checkpoints and exits) and the job comes back as a resume of the same run directory."""

    def __init__(self, job: Job):
        self.job = job
        self._process: TrainProcess | None = None

    def __call__(self) -> JobOutcome:
        return run_job(self.job, started=self._started)

    def _started(self, process: TrainProcess) -> None:
        self._process = process

    def checkpoint(self):
        from submitit.helpers import DelayedSubmission

        if self._process is not None:
            self._process.signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_SECONDS)
            except Exception:  # noqa: BLE001 - it did not stop in time: the checkpoint of its last epoch is used
                pass
        resume = f"trainer.resume={self.job.run_dir}"
        overrides = self.job.overrides if resume in self.job.overrides else [*self.job.overrides, resume]
        return DelayedSubmission(TrialCommand(Job(overrides, self.job.run_dir, self.job.trial)))


class SubmititTrials:
    """The runner's ``run_trial`` for submitit launchers: submit one trial job, poll it, return its JobOutcome.
    Safe to call from the runner's worker threads at once (one executor, one job each)."""

    def __init__(self, executor, base_overrides: list[str], poll_seconds: float = 1.0, squeue_seconds: float = 30.0):
        """``poll_seconds``: how often a job's result file is looked for (a file test); ``squeue_seconds``: how often
        SLURM is asked whether the job has ended without one (one ``squeue`` call; a cluster's controller serves
        every user's, so not every second per trial)."""
        self.executor, self.base, self.poll_seconds = executor, list(base_overrides), poll_seconds
        self.squeue_seconds = squeue_seconds

    def __call__(self, trial: TrialJob) -> JobOutcome:
        start = time.time()
        submitted = self.executor.submit(TrialCommand(trial.as_job(self.base)))
        log.info("trial %d: %s job %s (%s)", trial.number, self.executor.cluster, submitted.job_id, trial.run_dir.name)
        ended, asked = None, time.time()
        try:
            while not submitted.done():
                if self.executor.cluster == "slurm" and time.time() - asked >= self.squeue_seconds:
                    ended, asked = slurm_end(submitted.job_id), time.time()
                    if ended:
                        break
                time.sleep(self.poll_seconds)
        except BaseException:  # the sweeper is stopping: its jobs do not run on without it
            submitted.cancel(check=False)
            raise
        try:
            return submitted.result()  # waits a little for a result file that lags behind the job's end
        except Exception as exc:  # noqa: BLE001 - cancelled, killed, a lost node: one failed trial
            state = ended if ended and ended != GONE else (submitted.state.split() or ["UNKNOWN"])[0]  # "CANCELLED by 0"
            reason = str(exc).strip().splitlines()
            return JobOutcome(None, -1, time.time() - start, trial.run_dir,
                              error=f"{self.executor.cluster} job {submitted.job_id} ended {state} without a result: "
                                    f"{reason[0] if reason else type(exc).__name__}")


def slurm_end(job_id: str) -> str | None:
    """The state of SLURM job ``job_id`` if it has ended (``squeue`` still shows it for ``MinJobAge``, default
    5 minutes), :data:`GONE` if SLURM no longer knows it, None while it is pending or running, or when ``squeue``
    cannot tell. submitit learns a job's end from ``sacct``; on a cluster without job accounting it never does,
    and a cancelled job would hold its trial (and its sweeper) forever."""
    try:
        done = subprocess.run(["squeue", "--noheader", "--format=%T", f"--jobs={job_id}"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return GONE if "Invalid job id" in done.stderr else None
    states = done.stdout.split()
    return states[0] if states and all(s in ENDED_STATES for s in states) else GONE if not states else None
