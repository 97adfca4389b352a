"""A search's trials as the runner handles them: the jobs of a trial (:class:`TrialJob`), the value a run's
result gives an objective, and the failed trials a search lists at its end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hydrarl.config import merge_overrides
from hydrarl.sweep import shared
from hydrarl.training.jobs import Job, failure_reason

JOB_LOG = "job.log"  # a trial job's output, in its run directory (training.jobs.run_job)


@dataclass
class TrialJob:
    """One training job of a trial (one seed)."""

    number: int              # the Optuna trial number
    overrides: list[str]
    run_dir: Path
    trial_cfg: dict[str, Any]
    resume: bool = False     # an adopted job: continue the checkpoint its run directory holds
    result: dict[str, Any] | None = None  # an adopted job whose run finished: its TrialResult, nothing to run

    def as_job(self, base_overrides: list[str]) -> Job:
        """The train.py job: ``base_overrides`` (minus keys the trial sets) + the trial's overrides
        (+ ``trainer.resume=<run dir>``, which train.py expands to the run's own overrides and directory)."""
        overrides = merge_overrides(base_overrides, self.overrides)
        if self.resume:
            overrides.append(f"trainer.resume={self.run_dir}")
        return Job(overrides, self.run_dir, self.trial_cfg)


@dataclass
class FailedTrial:
    """A failed trial of a study, as a search's end lists it."""

    number: int
    reason: str              # one line: the run's own reason (failure_reason)
    log: Path | None         # the job.log of the run that failed


def failed_trials(study: optuna.Study) -> list[FailedTrial]:
    """The study's failed trials (pruned ones are not failures), with the reason and job.log of each."""
    failed = []
    for t in shared.counting(study):  # not surplus trials, nor failed ones a retry replaced
        if t.state != TrialState.FAIL:
            continue
        run_dirs = t.user_attrs.get("run_dirs") or []
        failed.append(FailedTrial(t.number, failure_reason(t.user_attrs.get("error", shared.STALE_ERROR)),
                                  Path(run_dirs[-1]) / JOB_LOG if run_dirs else None))
    return failed


def objective_value(result: dict[str, Any], name: str) -> float | None:
    """A TrialResult field (score, num_timesteps, epochs_run) or one of its metrics."""
    value = result.get(name, (result.get("metrics") or {}).get(name))
    return None if value is None else float(value)
