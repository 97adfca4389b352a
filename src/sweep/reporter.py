"""The job's side of a sweep trial: report each epoch's metric to the study, ask whether to prune.

The sweeper hands a job ``cfg.trial = {storage, study_name, trial_id, ...}``; the Trainer builds a
:class:`TrialReporter` from it. The pruner comes from the study's user attributes, so the job
prunes exactly as the sweeper configured.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from hydrarl.sweep.components import make_pruner, open_storage

PRUNER_ATTR = "hydrarl.pruner"


class TrialReporter:
    """Reports intermediate values (step = epoch) of one running trial, from any process."""

    def __init__(self, storage: str, study_name: str, trial_id: int, report: bool = True):
        storage_obj = open_storage(storage)
        pruner_cfg = optuna.load_study(study_name=study_name, storage=storage_obj).user_attrs.get(PRUNER_ATTR)
        self.study = optuna.load_study(study_name=study_name, storage=storage_obj, pruner=make_pruner(pruner_cfg))
        self.trial = optuna.trial.Trial(self.study, trial_id)
        self.enabled = report and len(self.study.directions) == 1

    @classmethod
    def from_config(cls, trial_cfg: Any) -> TrialReporter | None:
        if not trial_cfg:
            return None
        return cls(str(trial_cfg.storage), str(trial_cfg.study_name), int(trial_cfg.trial_id), bool(trial_cfg.get("report", True)))

    def report(self, value: float | None, step: int) -> bool:
        """Record ``value`` at ``step``; True if the pruner says stop, or if the study has ended this trial
        meanwhile (its sweeper died and another process failed it by its heartbeat and runs it again: this
        run no longer counts)."""
        if not self.enabled or value is None or not math.isfinite(value):
            return False
        try:
            self.trial.report(float(value), step)
        except optuna.exceptions.UpdateFinishedTrialError:
            return True
        return bool(self.trial.should_prune())
