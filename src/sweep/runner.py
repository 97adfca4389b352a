"""The search loop: ask Optuna for trials, keep ``n_jobs`` of them running, tell the results.

No batch barrier: a new trial starts as soon as a worker is free (``asynchronous: true``); with
``asynchronous: false`` the loop waits for a whole batch of ``n_jobs`` trials, as Hydra's batch
launchers do (kept for comparison). Trials run through ``run_trial(TrialJob) -> JobOutcome``, a
subprocess of train.py in real sweeps and a plain function in tests.

The study lives in its storage; re-running the same command resumes it: ``n_trials`` is the
study's total, trial numbers (and so run directories) continue, the epoch cap is kept, and the sampler's
seed is offset by the trials already in the study (so it proposes new configurations, not the first ones
again). The runner holds the sweep directory's lock (:class:`hydrarl.locks.DirLock`) while it works, and
its trials' processes die with it; so when a re-run takes the lock, a trial the study still has RUNNING
that was started from this sweep dir belongs to a dead sweeper and is adopted: continued under its own number
and run directory, each job (seed) told from the result its run left, resumed from its checkpoint, or run
again there. Other processes may share the study (:mod:`hydrarl.sweep.shared`): their trials count towards
``n_trials``, and a dead one's trials are found by their heartbeats and run again.

The epoch cap stops new trials after ``epoch_cap_factor`` x the fewest epochs of an early-stopped
trial: a capped trial gets ``trainer.epoch_cap`` and keeps its ``trainer.n_epochs``, so its
learning-rate and exploration schedules are those of the uncapped configuration, stopped earlier.
"""

from __future__ import annotations

import importlib
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from hydrarl.analysis.aggregates import aggregate
from hydrarl.config import override_key
from hydrarl.errors import UserError
from hydrarl.locks import DirLock
from hydrarl.status import Status
from hydrarl.sweep import shared
from hydrarl.sweep.components import check_storage, make_pruner, make_sampler, open_storage, storage_url
from hydrarl.sweep.reporter import PRUNER_ATTR
from hydrarl.sweep.settings import RLOptunaSweeperConf
from hydrarl.sweep.space import override_value, parse_space
from hydrarl.sweep.trials import JOB_LOG, TrialJob, objective_value
from hydrarl.training.jobs import JobOutcome, failure_reason
from hydrarl.training.result import read_result

log = logging.getLogger("hydrarl.sweep")

STOP_FILE = "delete_me_to_stop_hyperopt"
EPOCH_CAP_ATTR = "hydrarl.epoch_cap"


class SweepRunner:
    """Runs one study to its stop condition and returns it.

    ``settings``: the ``hydra.sweeper`` config (its ``study_name`` is not read: ``study_name`` is the
    resolved one); ``sweep_dir`` holds the trials' run directories, the stop file and the default
    journal; ``n_epochs`` is the trainer's ``n_epochs`` (trials run at most this many epochs, fewer
    under the epoch cap, unless the search space sets ``trainer.n_epochs``). Settings, space, sampler, pruner
    and storage URL are checked here (UserError), before anything is recorded: the sampler is built once to
    check it (:meth:`open_study` builds the one it uses, its seed offset by the study's trials).
    """

    def __init__(self, settings: RLOptunaSweeperConf, run_trial: Callable[[TrialJob], JobOutcome], *, sweep_dir: Path,
                 study_name: str, n_epochs: int, extra_trial_cfg: dict | None = None):
        settings.validate()
        self.s = settings
        self.sweep_dir, self.study_name, self.n_epochs = Path(sweep_dir), study_name, int(n_epochs)
        self.run_trial = run_trial
        self.extra_trial_cfg = extra_trial_cfg or {}
        self.distributions, self.fixed = parse_space(settings.params)
        make_sampler(settings.sampler, self.distributions)
        self.pruner = make_pruner(settings.pruner)
        self.storage = storage_url(settings.storage, self.sweep_dir)
        check_storage(self.storage)
        self.hook = self._import_hook(settings.custom_search_space)
        self._lock = threading.Lock()
        self._dir_lock = DirLock(self.sweep_dir, "search")
        self.adopted: list[tuple[optuna.Trial, list[TrialJob]]] = []  # a dead sweeper's trials, run first
        self.owner = f"{socket.gethostname()}:{self.sweep_dir.resolve()}"
        self.created = False      # whether this process created the study (it starts what the study shares)
        self.heartbeat: shared.Heartbeat | None = None
        self._said_waiting = False
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
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sweep directory's lock for the block (nothing more if an outer block holds it); a
        UserError naming the holder when another live sweeper has it."""
        if self._dir_lock.fd is not None:
            yield
            return
        self._dir_lock.acquire()
        try:
            yield
        finally:
            self._dir_lock.release()

    def open_study(self) -> optuna.Study:
        """Create or load the study (under the sweep directory's lock; :attr:`created` says which) and adopt
        the trials a dead sweeper of this sweep dir left RUNNING (:attr:`adopted`, run first by :meth:`run`)."""
        with self.locked():
            storage = open_storage(self.storage, self.s.heartbeat_seconds, self.s.grace_seconds, self.s.stale_retries)
            self.heartbeat = shared.Heartbeat(storage)
            options = {"study_name": self.study_name, "storage": storage, "pruner": self.pruner, "directions": self.s.directions}
            try:  # the storage decides atomically which of several processes starting at once creates the study
                study, self.created = optuna.create_study(**options), True
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.create_study(**options, load_if_exists=True)
            if [d.name.lower() for d in study.directions] != [d.lower() for d in self.s.directions]:
                raise UserError(f"study {self.study_name} exists with directions {study.directions}; this search asks for {self.s.directions}.")
            study.sampler = make_sampler(self.s.sampler, self.distributions, trials_before=len(study.get_trials(deepcopy=False)))
            study.set_user_attr(PRUNER_ATTR, dict(self.s.pruner or {}))
            self.adopted = [self._adopt(study, t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                            if t.user_attrs.get(shared.OWNER_ATTR) == self.owner]  # another process's are its own
        return study

    def _adopt(self, study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> tuple[optuna.Trial, list[TrialJob]]:
        """A trial left RUNNING by a dead sweeper (its lock was free), continued under its number: each job
        keeps the result its run left, resumes from its checkpoint, or runs again in its run directory."""
        from hydrarl.training.checkpoint import find_last_checkpoint  # torch: only when adopting

        trial = optuna.trial.Trial(study, frozen._trial_id)
        self.heartbeat.add(trial._trial_id)  # before another process could take it for dead
        stored = frozen.user_attrs.get("overrides")
        if stored:  # the trial's own command line, seed aside (each job sets its own)
            overrides = [o for o in stored if override_key(o) != "seed"]
        else:  # its sweeper died before starting it: sample what is missing as study.ask does
            for name, distribution in self.distributions.items():
                trial._suggest(name, distribution)
            overrides = self._overrides(trial, self.epoch_cap(study))
        jobs = self._jobs(trial.number, trial._trial_id, overrides, self._seeds(self.s.repeats))
        for job in jobs:
            job.result = read_result(job.run_dir)
            try:
                job.resume = job.result is None and bool(find_last_checkpoint(job.run_dir))
            except UserError:  # no checkpoint: run it again in its directory
                job.resume = False
        trial.set_user_attr("overrides", jobs[0].overrides)
        hows = ["its result kept" if j.result is not None else "resumed from its checkpoint" if j.resume else "run again" for j in jobs]
        log.warning("trial %d was left running by a sweeper that died; adopted under its number: %s", trial.number,
                    "; ".join(f"{j.run_dir.name}: {how}" for j, how in zip(jobs, hows, strict=True)) if len(jobs) > 1 else hows[0])
        return trial, jobs

    def total(self, study: optuna.Study) -> int:
        """The study's total number of trials: ``n_trials``, or a smaller grid's size."""
        return min(self.s.n_trials, getattr(study.sampler, "grid_size", self.s.n_trials))

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
    def stop_reason(self, study: optuna.Study, started: float) -> str | None:
        """Why no new trial starts, or None. The study's trials count, whichever process runs them
        (:func:`hydrarl.sweep.shared.counting`); a WAITING retry of a dead process's trial always runs."""
        if not (self.sweep_dir / STOP_FILE).exists():
            return f"{STOP_FILE} was deleted"
        trials = shared.counting(study)
        if len(trials) >= self.total(study) and not any(t.state == TrialState.WAITING for t in trials):
            return f"n_trials={self.total(study)} reached"
        if self.s.max_duration_minutes is not None and time.time() - started >= 60 * self.s.max_duration_minutes:
            return f"max_duration_minutes={self.s.max_duration_minutes} passed"
        if self.s.max_failure_rate is not None:
            finished = [t for t in shared.counting(study) if t.state.is_finished()]
            failed = sum(t.state == TrialState.FAIL for t in finished)
            if len(finished) >= 4 and failed / len(finished) > self.s.max_failure_rate:
                return f"max_failure_rate={self.s.max_failure_rate} exceeded ({failed} of {len(finished)} failed)"
        return None

    # -- one trial ---------------------------------------------------------------------------
    def _overrides(self, trial: optuna.Trial | optuna.trial.FixedTrial, cap: int, params: dict[str, Any] | None = None) -> list[str]:
        """The overrides of ``trial``'s configuration, seed aside: its sampled values (or ``params``), the
        fixed ones, the custom space's, ``trainer.n_epochs`` and (below it) the epoch ``cap``."""
        values = {**self.fixed, **(trial.params if params is None else params)}
        if self.hook is not None:
            values.update(self.hook(trial) or {})
        n_epochs = int(values.pop("trainer.n_epochs", self.n_epochs))  # searched or not
        overrides = [f"{k}={override_value(v)}" for k, v in values.items()]
        overrides.append(f"trainer.n_epochs={n_epochs}")
        if cap < n_epochs:  # the same configuration (schedules over n_epochs), stopped earlier
            overrides.append(f"trainer.epoch_cap={cap}")
        return overrides

    def _jobs(self, number: int, trial_id: int, overrides: list[str], seeds: list[int], tag: str = "") -> list[TrialJob]:
        """The jobs (one per seed) of trial ``number``; ``tag`` marks re-evaluations (which do not report)."""
        base = self.sweep_dir / f"trial_{number:04d}{tag}"
        jobs = []
        for i, seed in enumerate(seeds):
            trial_cfg = {"storage": self.storage, "study_name": self.study_name, "trial_id": trial_id,
                         "number": number, "report": i == 0 and not tag, **self.extra_trial_cfg}
            run_dir = base if len(seeds) == 1 else base / f"seed_{seed}"
            jobs.append(TrialJob(number, [*overrides, f"seed={seed}"], run_dir, trial_cfg))
        return jobs

    def _run(self, jobs: list[TrialJob]) -> list[JobOutcome]:
        outcomes = []
        for job in jobs:
            outcome = JobOutcome(job.result, 0, 0.0, job.run_dir) if job.result is not None else self.run_trial(job)
            with self._lock:
                self.busy_seconds += outcome.seconds
            outcomes.append(outcome)
            if outcome.result is None or outcome.result.get("status") == Status.PRUNED:
                break  # a failed or pruned seed decides the trial
        return outcomes

    @staticmethod
    def _fail(study: optuna.Study, trial: optuna.Trial, error: str, where: Path | None = None) -> None:
        """Tell the study ``trial`` failed; its reason on the console (one line) and in its user attrs."""
        trial.set_user_attr("error", error[-2000:])
        trial.set_user_attr("stop_reason", Status.FAILED)
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s%s; the search goes on", trial.number, failure_reason(error),
                    f" (log: {where / JOB_LOG})" if where is not None and (where / JOB_LOG).exists() else "")

    def _tell(self, study: optuna.Study, trial: optuna.Trial, outcomes: list[JobOutcome]) -> None:
        self.heartbeat.discard(trial._trial_id)
        try:
            self._record(study, trial, outcomes)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):  # "Cannot tell a FAIL trial", "... finished"
            if not study._storage.get_trial(trial._trial_id).state.is_finished():
                raise
            # its heartbeat went late (an overloaded machine, a paused sweeper): another process ended it meanwhile
            log.warning("trial %d was ended as failed by another process (its heartbeat was late) and run again as a "
                        "retry; the result of this run of it is in %s", trial.number, outcomes[0].run_dir if outcomes else "-")

    def _record(self, study: optuna.Study, trial: optuna.Trial, outcomes: list[JobOutcome]) -> None:
        results = [o.result for o in outcomes if o.result is not None]
        trial.set_user_attr("run_dirs", [str(o.run_dir) for o in outcomes])
        if len(results) < len(outcomes) or not results:
            failed = next((o for o in outcomes if o.result is None), outcomes[-1] if outcomes else None)
            self._fail(study, trial, (failed.error if failed else None) or "no result", failed.run_dir if failed else None)
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
            self._fail(study, trial, first.get("error") or "the run's status is failed", outcomes[0].run_dir)
            return
        values = []
        for name in self.s.objectives:
            per_seed = [objective_value(r, name) for r in results]
            if any(v is None or not math.isfinite(v) for v in per_seed):
                self._fail(study, trial, f"objective {name} is missing or not finite: {per_seed}", outcomes[0].run_dir)
                return
            trial.set_user_attr(f"per_seed/{name}", per_seed)
            values.append(float(aggregate(np.asarray(per_seed), self.s.aggregate)))
        study.tell(trial, values if len(values) > 1 else values[0])
        log.info("trial %d: %s = %s after %d epochs (%s)", trial.number, self.s.objectives, values, first["epochs_run"], first["status"])

    def _seeds(self, n: int, offset: int = 0) -> list[int]:
        return [self.s.seed + offset + i for i in range(n)]

    # -- the loop -------------------------------------------------------------------------
    def run(self, study: optuna.Study | None = None) -> optuna.Study:
        """Run trials until a stop condition holds; ``study`` if already opened with :meth:`open_study`.
        Adopted trials start first; the sweep directory's lock is held throughout."""
        with self.locked():
            study = study or self.open_study()
            with self.heartbeat:
                return self._loop(study)

    def _start(self, study: optuna.Study) -> tuple[optuna.Trial, list[TrialJob]] | None:
        """Ask the study for the next trial (a dead process's WAITING retry first) and make its jobs; None when it
        was surplus (another process took the last place) or its configuration could not be made (it failed)."""
        trial = shared.ask(study, self.distributions)
        trial.set_user_attr(shared.OWNER_ATTR, self.owner)  # first: another process opening the study must not adopt it
        self.heartbeat.add(trial._trial_id)
        retry = study._storage.get_trial_system_attrs(trial._trial_id).get(shared.RETRY_ATTR)  # Trial hides them
        if retry is None and shared.is_surplus(study, trial.number, self.total(study)):
            self.heartbeat.discard(trial._trial_id)
            trial.set_user_attr("stop_reason", shared.SURPLUS)
            study.tell(trial, state=TrialState.FAIL)
            log.info("trial %d not run: another process took the last of the n_trials=%d places", trial.number, self.total(study))
            return None
        try:
            jobs = self._jobs(trial.number, trial._trial_id, self._overrides(trial, self.epoch_cap(study)), self._seeds(self.s.repeats))
        except Exception as exc:  # noqa: BLE001 - e.g. a custom_search_space hook that raises
            self.heartbeat.discard(trial._trial_id)
            self._fail(study, trial, f"before it started: {exc!r}")
            return None
        trial.set_user_attr("overrides", jobs[0].overrides)
        log.info("trial %d started%s: %s", trial.number, f" (a retry of trial {retry}, whose process died)" if retry is not None else "",
                 " ".join(jobs[0].overrides))
        return trial, jobs

    def _loop(self, study: optuna.Study) -> optuna.Study:
        (self.sweep_dir / STOP_FILE).touch()
        started, reason = time.time(), None
        running: dict[Future, tuple[optuna.Trial, list[TrialJob]]] = {}
        # Trials start from the pool's threads, which live until the pool shuts down: a trial's process
        # dies with its thread (training.jobs.run_job), so with this sweeper, never before it.
        with ThreadPoolExecutor(max_workers=self.s.n_jobs, thread_name_prefix="trial") as pool:
            for trial, jobs in self.adopted:  # already in the study: they count, and run first
                running[pool.submit(self._run, jobs)] = (trial, jobs)
            self.adopted = []
            while True:
                shared.fail_stale(study)  # a dead process's trials become failed, each with a WAITING retry
                barrier_wait = not self.s.asynchronous and bool(running)  # a batch is still running
                while not barrier_wait and len(running) < self.s.n_jobs:
                    reason = self.stop_reason(study, started)
                    if reason:
                        break
                    started_trial = self._start(study)
                    if started_trial is not None:
                        running[pool.submit(self._run, started_trial[1])] = started_trial
                if not running:
                    if not self._wait_for_others(study, reason):
                        break
                    time.sleep(self.heartbeat.interval)  # a retry of theirs may still come
                    continue
                done, _ = wait(running, timeout=self.heartbeat.interval, return_when=FIRST_COMPLETED)
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

    def _wait_for_others(self, study: optuna.Study, reason: str | None) -> bool:
        """Whether to wait, with nothing of ours running, for other processes' trials: with heartbeats, while the
        study's total is reached but some trial still runs elsewhere (its process may die and its retry fall to
        this one). So each process's search ends when the study's last trial does."""
        if not (self.heartbeat.enabled and reason and reason.startswith("n_trials")):
            return False
        others = shared.others_running(study, self.owner)
        if others and not self._said_waiting:
            log.info("n_trials reached; waiting for %d trial(s) of other processes to end (%s)", len(others),
                     ", ".join(str(t.number) for t in others))
            self._said_waiting = True
        return bool(others)

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
            jobs = self._jobs(frozen.number, frozen._trial_id, self._overrides(trial, self.epoch_cap(study), frozen.params),
                              seeds, tag="_reeval")
            outcomes = [self.run_trial(j) for j in jobs]
            scores = [objective_value(o.result, self.s.objectives[0]) for o in outcomes if o.result]
            study.set_user_attr(f"reevaluation/{frozen.number}", scores)
            log.info("re-evaluated trial %d with %d fresh seeds: %s", frozen.number, len(scores), scores)
