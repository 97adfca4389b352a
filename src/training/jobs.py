"""Run one sweep job as its own ``experiment/train.py`` process.

A job is the training command with the sweep's overrides, the trial's sampled values and
``hydra.run.dir`` set; its output goes to ``<run dir>/job.log`` and its TrialResult to
``<run dir>/trial_result.json``. A crash, a bad configuration or a killed process is one failed
job, never the sweep's end. Safe to call from several threads at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydrarl.paths import TRAIN_SCRIPT

RESULT_FILE = "trial_result.json"


@dataclass
class Job:
    """One training process of a sweep."""

    overrides: list[str]                 # everything train.py gets besides hydra.run.dir
    run_dir: Path
    trial: dict[str, Any] | None = None  # cfg.trial for the job: storage, study_name, trial_id, report, ...


@dataclass
class JobOutcome:
    """What came back from a job: its TrialResult as a dict, or why there is none."""

    result: dict[str, Any] | None
    returncode: int
    seconds: float
    run_dir: Path
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def trial_override(trial: dict[str, Any]) -> str:
    """``trial={key:value,...}`` in Hydra's grammar (strings double-quoted)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (int, float)):
            return repr(v)
        return json.dumps(str(v))

    return "trial={" + ",".join(f"{k}:{value(v)}" for k, v in trial.items()) + "}"


def run_job(job: Job, python: str = sys.executable, env: dict[str, str] | None = None) -> JobOutcome:
    """Run ``job`` to its end in a subprocess and collect its TrialResult."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    args = [python, str(TRAIN_SCRIPT), *job.overrides, f"hydra.run.dir={job.run_dir}", "trainer.progress_bar=false"]
    if job.trial:
        args.append(trial_override(job.trial))
    start = time.perf_counter()
    with open(job.run_dir / "job.log", "ab") as out:
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    result_file = job.run_dir / RESULT_FILE
    if proc.returncode == 0 and result_file.exists():
        return JobOutcome(json.loads(result_file.read_text()), 0, seconds, job.run_dir)
    tail = (job.run_dir / "job.log").read_text(errors="replace")[-4000:]
    return JobOutcome(None, proc.returncode, seconds, job.run_dir, error=f"exit status {proc.returncode}\n{tail}")
