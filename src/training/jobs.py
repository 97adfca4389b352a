"""Run ``experiment/train.py``-like commands as logged subprocesses: the one way a search's trials and
the regression matrix's jobs start training processes.

:class:`TrainProcess` starts one command with stdout and stderr appended to a log file (after a
``$ <command>`` line) and, once it has ended, gives a :class:`JobOutcome`: exit status, seconds, and the
TrialResult the run left in its run directory (``hydrarl.training.result.RESULT_FILE``).
:func:`run_job` runs one sweep job to its end with it. A crash, a bad configuration or a killed process
is one failed job, never the caller's end. Safe to use from several threads at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydrarl.paths import TRAIN_SCRIPT
from hydrarl.training.result import read_result

LOG_TAIL_CHARS = 4000  # of a failed job's log, kept in its JobOutcome.error


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
    """

    def __init__(self, args: list[str], log: Path, run_dir: Path | None, env: dict[str, str] | None = None,
                 new_session: bool = False):
        self.args, self.log, self.run_dir, self.new_session = list(args), Path(log), run_dir, new_session
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        with open(self.log, "ab") as out:
            out.write(f"$ {' '.join(self.args)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                         start_new_session=new_session)
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
        gave an exit status). Without a result, ``error`` holds the exit status and the log's tail."""
        code = self.wait()
        result = read_result(self.run_dir) if code == 0 and self.run_dir is not None else None
        if result is not None:
            return JobOutcome(result, 0, self.seconds, self.run_dir)
        tail = self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        return JobOutcome(None, code, self.seconds, self.run_dir, error=f"exit status {code}\n{tail}")


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


def run_job(job: Job) -> JobOutcome:
    """Run ``job`` to its end in a subprocess (output in ``<run dir>/job.log``) and collect its TrialResult."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    overrides = [*job.overrides, f"hydra.run.dir={job.run_dir}", "trainer.progress_bar=false"]
    if job.trial:
        overrides.append(trial_override(job.trial))
    process = TrainProcess(train_command(overrides), job.run_dir / "job.log", job.run_dir)
    try:
        process.wait()
    except BaseException:  # the sweeper is stopping: the job is not left behind
        process.signal(signal.SIGKILL)
        process.wait()
        raise
    return process.outcome()
