"""Run ``experiment/train.py``-like commands as logged subprocesses: the one way a search's trials and
the regression matrix's jobs start training processes.

:class:`TrainProcess` starts one command with stdout and stderr appended to a log file (after a
``$ <command>`` line) and, once it has ended, gives a :class:`JobOutcome`: exit status, seconds, and the
TrialResult the run left in its run directory (``hydrarl.training.result.RESULT_FILE``).
:func:`run_job` runs one sweep job to its end with it. A crash, a bad configuration or a killed process
is one failed job, never the caller's end; :func:`failure_reason` says why in one line. Safe to use from
several threads at once.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydrarl.paths import TRAIN_SCRIPT
from hydrarl.training.result import read_result

LOG_TAIL_CHARS = 4000  # of a failed job's log, kept in its JobOutcome.error
EXIT_STATUS = "exit status"  # the first line of a JobOutcome.error
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Resolved once, here: the child calls it between fork and exec, where it must not load anything.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when the thread that started it ends (Linux
    ``PR_SET_PDEATHSIG``; the kernel ties it to the forking *thread*, so start such children from a thread
    that lives as long as the caller: the main thread or a pool's worker). A child whose ``parent`` died
    before the call ends at once."""
    def setup() -> None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return setup


def failure_reason(error: str | None) -> str:
    """The one line that says why a job failed, from its error text (a JobOutcome's ``error``, a log tail, a
    traceback): the last ``error: ...`` line (a UserError) or the exception line of the last traceback,
    whichever comes later; else the ``exit status ...`` line (a killed process says nothing); else the last line."""
    lines = [line.rstrip() for line in (error or "").splitlines() if line.strip() and not line.startswith("Set the environment variable HYDRA_FULL_ERROR")]
    user = max((i for i, line in enumerate(lines) if line.startswith("error: ")), default=-1)
    trace = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")), default=-1)
    exception = next((line for line in lines[trace + 1:] if not line.startswith((" ", "\t"))), None) if trace >= 0 else None
    if exception is not None and trace > user:
        return exception
    if user >= 0:
        return lines[user]
    if lines and lines[0].startswith(EXIT_STATUS):
        return lines[0]
    return lines[-1] if lines else "failed (no reason recorded)"


@dataclass
class Job:
    """One training process of a sweep."""

    overrides: list[str]                 # everything train.py gets besides hydra.run.dir
    run_dir: Path
    trial: dict[str, Any] | None = None  # cfg.trial for the job: storage, study_name, trial_id, report, ...


@dataclass
class JobOutcome:
    """What came back from a job: its TrialResult as a dict (None unless it exited 0 with one), or why
    there is none. ``seconds``: wall-clock time from start to exit."""

    result: dict[str, Any] | None
    returncode: int
    seconds: float
    run_dir: Path
    error: str | None = None


class TrainProcess:
    """One command running as a subprocess; output appended to ``log``; its run directory ``run_dir``.

    ``env``: variables set on top of this process's environment. ``new_session``: the child leads its
    own process group (:meth:`signal` then reaches everything it started; a terminal's Ctrl-C does not).
    ``die_with_parent``: on Linux the child is SIGKILLed when the thread that created this object ends,
    SIGKILL of the whole caller included (no orphans left training); see :func:`_die_with`.
    """

    def __init__(self, args: list[str], log: Path, run_dir: Path | None, env: dict[str, str] | None = None,
                 new_session: bool = False, die_with_parent: bool = False):
        self.args, self.log, self.run_dir, self.new_session = list(args), Path(log), run_dir, new_session
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        preexec = _die_with(os.getpid()) if die_with_parent and _PRCTL is not None else None
        with open(self.log, "ab") as out:
            self.log_offset = out.tell()  # this start's output begins here (the log may hold earlier starts')
            out.write(f"$ {' '.join(self.args)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                         start_new_session=new_session, preexec_fn=preexec)
        self.seconds: float | None = None

    def poll(self) -> int | None:
        """The exit status, or None while running."""
        code = self.proc.poll()
        if code is not None and self.seconds is None:
            self.seconds = time.perf_counter() - self.start
        return code

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit (``subprocess.TimeoutExpired`` after ``timeout`` seconds); the exit status."""
        self.proc.wait(timeout)
        return self.poll()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the process (to its whole group with ``new_session``); nothing if it has ended."""
        try:
            if self.new_session:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def outcome(self) -> JobOutcome:
        """The ended job's exit status, seconds and TrialResult (call after :meth:`poll` or :meth:`wait`
        gave an exit status). Without a result, ``error`` holds the exit status (and the signal that killed
        it) and the tail of this start's output."""
        code = self.wait()
        result = read_result(self.run_dir) if code == 0 and self.run_dir is not None else None
        if result is not None:
            return JobOutcome(result, 0, self.seconds, self.run_dir)
        with open(self.log, "rb") as log:
            log.seek(self.log_offset)
            tail = log.read().decode(errors="replace")[-LOG_TAIL_CHARS:]
        killed = f" (killed by {signal.Signals(-code).name})" if code < 0 and -code in signal.valid_signals() else ""
        return JobOutcome(None, code, self.seconds, self.run_dir, error=f"{EXIT_STATUS} {code}{killed}\n{tail}")


def trial_override(trial: dict[str, Any]) -> str:
    """``trial={key:value,...}`` in Hydra's grammar (strings double-quoted)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (int, float)):
            return repr(v)
        return json.dumps(str(v))

    return "trial={" + ",".join(f"{k}:{value(v)}" for k, v in trial.items()) + "}"


def train_command(overrides: list[str]) -> list[str]:
    """The argv of ``experiment/train.py <overrides>`` run by this Python."""
    return [sys.executable, str(TRAIN_SCRIPT), *overrides]


def run_job(job: Job, started: Callable[[TrainProcess], None] | None = None) -> JobOutcome:
    """Run ``job`` to its end in a subprocess (output in ``<run dir>/job.log``) and collect its TrialResult.
    The subprocess dies with the calling thread (``die_with_parent``): a sweeper killed by SIGKILL leaves no
    trial training on; its re-run adopts the trial. ``started`` gets the process once it runs (to signal it)."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    overrides = [*job.overrides, f"hydra.run.dir={job.run_dir}", "trainer.progress_bar=false"]
    if job.trial:
        overrides.append(trial_override(job.trial))
    process = TrainProcess(train_command(overrides), job.run_dir / "job.log", job.run_dir, die_with_parent=True)
    if started is not None:
        started(process)
    try:
        process.wait()
    except BaseException:  # the sweeper is stopping: the job is not left behind
        process.signal(signal.SIGKILL)
        process.wait()
        raise
    return process.outcome()
