"""The search loop: ask Optuna for trials, keep ``n_jobs`` of them running, tell the results.

No batch barrier: a new trial starts as soon as a worker is free (``asynchronous: true``); with
``asynchronous: false`` the loop waits for a whole batch of ``n_jobs`` trials, as Hydra's batch
launchers do (kept for comparison). Trials run through ``run_trial(TrialJob) -> JobOutcome``, a
subprocess of train.py in real sweeps and a plain function in tests.

The study lives in its storage; re-running the same command resumes it: ``n_trials`` is the
study's total, trial numbers (and so run directories) continue, the epoch cap is kept, and trials
left RUNNING by a killed sweeper are marked failed and queued again with the same parameters.

The epoch cap stops new trials after ``epoch_cap_factor`` x the fewest epochs of an early-stopped
trial: a capped trial gets ``trainer.epoch_cap`` and keeps its ``trainer.n_epochs``, so its
learning-rate and exploration schedules are those of the uncapped configuration, stopped earlier.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from hydrarl.analysis.curves import aggregate
from hydrarl.config import merge_overrides
from hydrarl.errors import UserError
from hydrarl.status import Status
from hydrarl.sweep.components import make_pruner, make_sampler, open_storage, storage_url
from hydrarl.sweep.reporter import PRUNER_ATTR
from hydrarl.sweep.settings import RLOptunaSweeperConf
from hydrarl.sweep.space import override_value, parse_space
from hydrarl.training.jobs import Job, JobOutcome

log = logging.getLogger("hydrarl.sweep")

STOP_FILE = "delete_me_to_stop_hyperopt"
EPOCH_CAP_ATTR = "hydrarl.epoch_cap"
ABANDONED_ATTR = "hydrarl.abandoned"


@dataclass
class TrialJob:
    """One training job of a trial (one seed)."""

    number: int              # the Optuna trial number
    overrides: list[str]
    run_dir: Path
    trial_cfg: dict[str, Any]

    def as_job(self, base_overrides: list[str]) -> Job:
        """The train.py job: ``base_overrides`` (minus keys the trial sets) + the trial's overrides."""
        return Job(merge_overrides(base_overrides, self.overrides), self.run_dir, self.trial_cfg)


def objective_value(result: dict[str, Any], name: str) -> float | None:
    """A TrialResult field (score, num_timesteps, epochs_run) or one of its metrics."""
    value = result.get(name, (result.get("metrics") or {}).get(name))
    return None if value is None else float(value)


class SweepRunner:
    """Runs one study to its stop condition and returns it.

    ``settings``: the ``hydra.sweeper`` config (its ``study_name`` is not read: ``study_name`` is the
    resolved one); ``sweep_dir`` holds the trials' run directories, the stop file and the default
    journal; ``n_epochs`` is the trainer's ``n_epochs`` (trials run at most this many epochs, fewer
    under the epoch cap, unless the search space sets ``trainer.n_epochs``).
    """

    def __init__(self, settings: RLOptunaSweeperConf, run_trial: Callable[[TrialJob], JobOutcome], *, sweep_dir: Path,
                 study_name: str, n_epochs: int, extra_trial_cfg: dict | None = None):
        self.s = settings
        self.sweep_dir, self.study_name, self.n_epochs = Path(sweep_dir), study_name, int(n_epochs)
        self.run_trial = run_trial
        self.extra_trial_cfg = extra_trial_cfg or {}
        self.distributions, self.fixed = parse_space(settings.params)
        if settings.aggregate not in ("mean", "iqm"):
            raise UserError(f"hydra.sweeper.aggregate={settings.aggregate} is unknown; mean or iqm.")
        if len(settings.objectives) != len(settings.directions):
            raise UserError(f"hydra.sweeper: {len(settings.directions)} direction(s) but objectives {settings.objectives}.")
        self.storage = storage_url(settings.storage, self.sweep_dir)
        self.hook = self._import_hook(settings.custom_search_space)
        self._lock = threading.Lock()
        self.busy_seconds = 0.0   # summed wall time of this invocation's jobs
        self.wall_seconds = 0.0   # wall time of this invocation's loop

    @staticmethod
    def _import_hook(path: str | None):
        if not path:
            return None
        module, _, name = path.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UserError(f"hydra.sweeper.custom_search_space={path} cannot be imported: {exc}") from exc

    # -- study ----------------------------------------------------------------------------
    def open_study(self) -> optuna.Study:
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage),
            sampler=make_sampler(self.s.sampler, self.distributions),
            pruner=make_pruner(self.s.pruner),
            directions=self.s.directions,
            load_if_exists=True,
        )
        if [d.name.lower() for d in study.directions] != [d.lower() for d in self.s.directions]:
            raise UserError(f"study {self.study_name} exists with directions {study.directions}; this search asks for {self.s.directions}.")
        study.set_user_attr(PRUNER_ATTR, dict(self.s.pruner or {}))
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            if trial.state == TrialState.RUNNING:  # its sweeper died: run the same parameters again
                study._storage.set_trial_user_attr(trial._trial_id, ABANDONED_ATTR, True)
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                if trial.params:  # none when the sweeper died between asking and sampling: nothing to repeat
                    study.enqueue_trial(trial.params, skip_if_exists=False)
                log.warning("trial %d was left running by an earlier sweeper; %s", trial.number,
                            "its parameters are queued again" if trial.params else "it had no parameters yet")
        return study

    def counted(self, study: optuna.Study) -> int:
        """Trials that count towards n_trials: finished ones, not those abandoned by a dead sweeper."""
        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return sum(1 for t in study.get_trials(deepcopy=False, states=done) if not t.user_attrs.get(ABANDONED_ATTR))

    def epoch_cap(self, study: optuna.Study) -> int:
        """The most epochs a new trial runs: the study's cap, at most ``n_epochs``."""
        return int(min(self.n_epochs, study.user_attrs.get(EPOCH_CAP_ATTR, self.n_epochs)))

    def _update_cap(self, study: optuna.Study) -> None:
        if not self.s.epoch_cap_factor:
            return
        early = [t.user_attrs["epochs_run"] for t in study.get_trials(deepcopy=False) if t.user_attrs.get("stop_reason") == Status.EARLY_STOPPED]
        if early:
            cap = max(1, math.ceil(self.s.epoch_cap_factor * min(early)))
            if cap != study.user_attrs.get(EPOCH_CAP_ATTR):
                study.set_user_attr(EPOCH_CAP_ATTR, cap)
                log.info("epoch cap for new trials: %d (%.2g x the fastest early stop, %d epochs)", cap, self.s.epoch_cap_factor, min(early))

    # -- stop conditions --------------------------------------------------------------------
    def stop_reason(self, study: optuna.Study, running: int, started: float) -> str | None:
        if not (self.sweep_dir / STOP_FILE).exists():
            return f"{STOP_FILE} was deleted"
        total = min(self.s.n_trials, getattr(study.sampler, "grid_size", self.s.n_trials))
        if self.counted(study) + running >= total:
            return f"n_trials={total} reached"
        if self.s.max_duration_minutes is not None and time.time() - started >= 60 * self.s.max_duration_minutes:
            return f"max_duration_minutes={self.s.max_duration_minutes} passed"
        if self.s.max_failure_rate is not None:
            finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and not t.user_attrs.get(ABANDONED_ATTR)]
            failed = sum(t.state == TrialState.FAIL for t in finished)
            if len(finished) >= 4 and failed / len(finished) > self.s.max_failure_rate:
                return f"max_failure_rate={self.s.max_failure_rate} exceeded ({failed} of {len(finished)} failed)"
        return None

    # -- one trial ---------------------------------------------------------------------------
    def _jobs(self, study: optuna.Study, trial, seeds: list[int], tag: str = "", trial_id: int | None = None,
              params: dict[str, Any] | None = None) -> list[TrialJob]:
        """The jobs (one per seed) of ``trial``; ``tag`` marks re-evaluations (which do not report)."""
        trial_id = trial._trial_id if trial_id is None else trial_id
        values = {**self.fixed, **(trial.params if params is None else params)}
        if self.hook is not None:
            values.update(self.hook(trial) or {})
        n_epochs = int(values.pop("trainer.n_epochs", self.n_epochs))  # searched or not
        overrides = [f"{k}={override_value(v)}" for k, v in values.items()]
        overrides.append(f"trainer.n_epochs={n_epochs}")
        stop = min(n_epochs, self.epoch_cap(study))
        if stop < n_epochs:  # the same configuration (schedules over n_epochs), stopped earlier
            overrides.append(f"trainer.epoch_cap={stop}")
        base = self.sweep_dir / f"trial_{trial.number:04d}{tag}"
        jobs = []
        for i, seed in enumerate(seeds):
            trial_cfg = {"storage": self.storage, "study_name": self.study_name, "trial_id": trial_id,
                         "number": trial.number, "report": i == 0 and not tag, **self.extra_trial_cfg}
            run_dir = base if len(seeds) == 1 else base / f"seed_{seed}"
            jobs.append(TrialJob(trial.number, [*overrides, f"seed={seed}"], run_dir, trial_cfg))
        return jobs

    def _run(self, jobs: list[TrialJob]) -> list[JobOutcome]:
        outcomes = []
        for job in jobs:
            outcome = self.run_trial(job)
            with self._lock:
                self.busy_seconds += outcome.seconds
            outcomes.append(outcome)
            if outcome.result is None or outcome.result.get("status") == Status.PRUNED:
                break  # a failed or pruned seed decides the trial
        return outcomes

    def _tell(self, study: optuna.Study, trial: optuna.Trial, outcomes: list[JobOutcome]) -> None:
        results = [o.result for o in outcomes if o.result is not None]
        trial.set_user_attr("run_dirs", [str(o.run_dir) for o in outcomes])
        if len(results) < len(outcomes) or not results:
            error = next((o.error for o in outcomes if o.result is None), "no result")
            trial.set_user_attr("error", (error or "")[-2000:])
            trial.set_user_attr("stop_reason", Status.FAILED)
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed (%s); the search goes on", trial.number, (error or "").splitlines()[0])
            return
        first = results[0]
        trial.set_user_attr("epochs_run", first["epochs_run"])
        trial.set_user_attr("num_timesteps", sum(r["num_timesteps"] for r in results))
        trial.set_user_attr("stop_reason", first["status"])
        if first["status"] == Status.PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d pruned after %d epochs", trial.number, first["epochs_run"])
            return
        if first["status"] == Status.FAILED:
            trial.set_user_attr("error", (first.get("error") or "")[-2000:])
            study.tell(trial, state=TrialState.FAIL)
            return
        values = []
        for name in self.s.objectives:
            per_seed = [objective_value(r, name) for r in results]
            if any(v is None or not math.isfinite(v) for v in per_seed):
                trial.set_user_attr("error", f"objective {name} is missing or not finite: {per_seed}")
                trial.set_user_attr("stop_reason", Status.FAILED)
                study.tell(trial, state=TrialState.FAIL)
                log.warning("trial %d failed: objective %s = %s", trial.number, name, per_seed)
                return
            trial.set_user_attr(f"per_seed/{name}", per_seed)
            values.append(float(aggregate(np.asarray(per_seed), self.s.aggregate)))
        study.tell(trial, values if len(values) > 1 else values[0])
        log.info("trial %d: %s = %s after %d epochs (%s)", trial.number, self.s.objectives, values, first["epochs_run"], first["status"])

    def _seeds(self, n: int, offset: int = 0) -> list[int]:
        return [self.s.seed + offset + i for i in range(n)]

    # -- the loop -------------------------------------------------------------------------
    def run(self, study: optuna.Study | None = None) -> optuna.Study:
        """Run trials until a stop condition holds; ``study`` if already opened with :meth:`open_study`."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / STOP_FILE).touch()
        study = study or self.open_study()
        started, reason = time.time(), None
        running: dict[Future, tuple[optuna.Trial, list[TrialJob]]] = {}
        with ThreadPoolExecutor(max_workers=self.s.n_jobs, thread_name_prefix="trial") as pool:
            while True:
                barrier_wait = not self.s.asynchronous and bool(running)  # a batch is still running
                while not barrier_wait and len(running) < self.s.n_jobs:
                    reason = self.stop_reason(study, len(running), started)
                    if reason:
                        break
                    trial = study.ask(self.distributions)
                    try:
                        jobs = self._jobs(study, trial, self._seeds(self.s.repeats))
                    except Exception as exc:  # noqa: BLE001 - e.g. a custom_search_space hook that raises
                        trial.set_user_attr("error", repr(exc))
                        study.tell(trial, state=TrialState.FAIL)
                        log.warning("trial %d failed before it started: %r", trial.number, exc)
                        continue
                    trial.set_user_attr("overrides", jobs[0].overrides)
                    running[pool.submit(self._run, jobs)] = (trial, jobs)
                    log.info("trial %d started: %s", trial.number, " ".join(jobs[0].overrides))
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    trial, _jobs = running.pop(future)
                    try:
                        outcomes = future.result()
                    except Exception as exc:  # noqa: BLE001 - a broken runner fails one trial only
                        outcomes = [JobOutcome(None, -1, 0.0, _jobs[0].run_dir, error=repr(exc))]
                    self._tell(study, trial, outcomes)
                    self._update_cap(study)
        self.wall_seconds = time.time() - started
        log.info("search stopped: %s; %d trials in the study; workers busy %.0f%% of the time",
                 reason, len(study.trials), 100 * self.utilization)
        if self.s.reevaluate_top_k:
            self.reevaluate(study)
        return study

    @property
    def utilization(self) -> float:
        """Busy worker-seconds / available worker-seconds (n_jobs x wall time) of this invocation."""
        return self.busy_seconds / max(self.s.n_jobs * self.wall_seconds, 1e-9)

    def reevaluate(self, study: optuna.Study) -> None:
        """Rerun the best ``reevaluate_top_k`` completed trials with fresh seeds; the scores go to the
        study's user attribute ``reevaluation/<trial number>`` (finished trials cannot be changed)."""
        if len(self.s.directions) > 1:
            return
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        reverse = self.s.directions[0] == "maximize"
        top = sorted(complete, key=lambda t: t.value, reverse=reverse)[: self.s.reevaluate_top_k]
        for rank, frozen in enumerate(top):
            trial = optuna.trial.FixedTrial(frozen.params, number=frozen.number)
            seeds = self._seeds(self.s.reevaluate_repeats, offset=10_000 * (rank + 1))
            jobs = self._jobs(study, trial, seeds, tag="_reeval", trial_id=frozen._trial_id, params=frozen.params)
            outcomes = [self.run_trial(j) for j in jobs]
            scores = [objective_value(o.result, self.s.objectives[0]) for o in outcomes if o.result]
            study.set_user_attr(f"reevaluation/{frozen.number}", scores)
            log.info("re-evaluated trial %d with %d fresh seeds: %s", frozen.number, len(scores), scores)
