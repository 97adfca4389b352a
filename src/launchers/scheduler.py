"""Run many shell-free commands under a process cap, spaced in time, optionally gated on free GPU memory.

Each job is one argv command (``experiment/train.py`` or ``roundtrip --train``), started through
``hydrarl.training.jobs.TrainProcess``: stdout and stderr in its own log, its TrialResult read from its
run directory once it ends. A job fails on a non-zero exit or on an error in its log (a Python traceback). With GPUs, a job starts only on a GPU with at least
``min_free_mb`` free (``nvidia-smi``), with ``CUDA_VISIBLE_DEVICES`` set to it; without
``nvidia-smi`` everything runs on the CPU. Ctrl-C (or SIGTERM) stops every job started.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydrarl.training.jobs import TrainProcess

ERROR_MARKERS = ("Traceback (most recent call last)",)


@dataclass
class MatrixJob:
    """One entry of the matrix: ``command`` (argv), output to ``log``, the run it makes in ``run_dir``
    (its TrialResult lands in ``result`` when it ends). ``scratch``: a directory the scheduler deletes
    once the job has passed (a function-tier run dir: ~15 MB of checkpoints and replay buffers per pair,
    5 GB per tier); a failed job's is kept for the post-mortem. ``started``/``ended``: ``time.time()``."""

    name: str
    command: list[str]
    log: Path
    meta: dict = field(default_factory=dict)
    run_dir: Path | None = None
    scratch: Path | None = None
    result: dict[str, Any] | None = None
    returncode: int | None = None
    started: float | None = None
    ended: float | None = None
    gpu: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None


def free_gpu_memory(gpus: list[int]) -> dict[int, int] | None:
    """Free MB per GPU index from ``nvidia-smi`` (only the listed ones); None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    free = {}
    for line in out.strip().splitlines():
        index, mb = (part.strip() for part in line.split(","))
        if int(index) in gpus:
            free[int(index)] = int(float(mb))
    return free


def log_error(path: Path) -> str | None:
    """The first error marker found in a job's log, with the line after it."""
    if not path.exists():
        return None
    text = path.read_text(errors="replace")
    for marker in ERROR_MARKERS:
        at = text.find(marker)
        if at >= 0:
            tail = text[at:].splitlines()
            return " | ".join(tail[-2:]) if len(tail) > 1 else marker
    return None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class Scheduler:
    """Runs :class:`MatrixJob` s: at most ``max_procs`` at once, ``spacing`` seconds between launches."""

    def __init__(self, max_procs: int = 6, spacing: float = 15.0, gpus: list[int] | None = None, min_free_mb: int = 2500,
                 poll: float = 0.2, say=print):
        if max_procs < 1 or spacing < 0 or min_free_mb < 0:  # with no process allowed, run() would wait forever
            raise ValueError(f"Scheduler needs max_procs >= 1, spacing >= 0, min_free_mb >= 0; got {max_procs}, {spacing}, {min_free_mb}")
        self.max_procs, self.spacing, self.min_free_mb, self.poll = max_procs, spacing, min_free_mb, poll
        self.say = say
        self.gpus = gpus if gpus is not None else [0]
        self.gpu_free = free_gpu_memory(self.gpus)
        if self.gpu_free is None:
            say("no GPU found (nvidia-smi not available): running every job on the CPU")
        self.running: dict[str, tuple[MatrixJob, TrainProcess]] = {}

    def _pick_gpu(self) -> int | None | bool:
        """A GPU with enough free memory (False if none has), or None in CPU mode."""
        if self.gpu_free is None:
            return None
        free = free_gpu_memory(self.gpus) or {}
        for gpu in self.gpus:
            if free.get(gpu, 0) >= self.min_free_mb:
                return gpu
        return False

    def _start(self, job: MatrixJob, gpu: int | None) -> TrainProcess:
        """Start ``job`` in its own process group, seeing only ``gpu`` (no GPU at all in CPU mode)."""
        env = {"CUDA_VISIBLE_DEVICES": "" if gpu is None else str(gpu)}
        return TrainProcess(job.command, job.log, job.run_dir, env=env, new_session=True)

    def _stop_all(self) -> None:
        for job, proc in self.running.values():
            proc.signal(signal.SIGTERM)
            job.returncode, job.error = -signal.SIGTERM, "stopped by Ctrl-C"
        deadline = time.time() + 10
        for _, proc in self.running.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.signal(signal.SIGKILL)

    def run(self, jobs: list[MatrixJob], skip=None) -> list[MatrixJob]:
        """Run every job; returns them with returncode/error set (None for skipped ones).

        ``skip(job, jobs)`` is asked before each launch; True leaves the job unrun. Raises
        KeyboardInterrupt after stopping every running job.
        """
        queue = list(jobs)
        last_launch = -float("inf")
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            while queue or self.running:
                self._reap()
                if queue and len(self.running) < self.max_procs and time.time() - last_launch >= self.spacing:
                    if skip is not None and skip(queue[0], jobs):
                        self.say(f"skip {queue.pop(0).name}: its bar can no longer be met")
                        continue
                    gpu = self._pick_gpu()
                    if gpu is not False:
                        job = queue.pop(0)
                        job.gpu, job.started = gpu, time.time()
                        self.running[job.name] = (job, self._start(job, gpu))
                        last_launch = time.time()
                        continue
                time.sleep(self.poll)
        except KeyboardInterrupt:
            self.say(f"interrupted: stopping {len(self.running)} running job(s)")
            self._stop_all()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return jobs

    def _reap(self) -> None:
        for name, (job, proc) in list(self.running.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.running[name]
            job.returncode, job.ended = code, time.time()
            job.result = proc.outcome().result
            job.error = log_error(job.log) if code == 0 else f"exit status {code}"
            if job.ok and job.scratch is not None:
                shutil.rmtree(job.scratch, ignore_errors=True)
            self.say(f"{'ok  ' if job.ok else 'FAIL'} {job.name} ({job.ended - job.started:.0f} s){'' if job.ok else ': ' + str(job.error)}")
