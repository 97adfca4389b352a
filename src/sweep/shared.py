"""One study, many sweeper processes: what makes a search safe to run from several processes or machines at once.

Several ``rl_optuna`` sweepers may share one study (a PostgreSQL or other SQLAlchemy URL, or a journal file
on a shared disk in ``hydra.sweeper.storage``). Each asks the study for trials and runs them; the study
numbers them, so no two processes run the same trial. Three things need more than that:

- **The total.** ``n_trials`` is the study's total over every process. A trial counts once it is asked for
  (RUNNING) and stays counted when it ends, except a failed trial that a retry replaced (:func:`counting`).
  Two processes that ask at the same moment can both see room for one more trial; the trials' numbers then
  decide: a trial whose rank among the counting trials is past the total is *surplus* (:func:`is_surplus`),
  and its process ends it unrun (FAIL, ``stop_reason: surplus``), so it counts nowhere, not as a failure.
- **Dead processes.** With an RDB storage each sweeper records a heartbeat for each of its running trials
  (:class:`Heartbeat`, every ``heartbeat_seconds``). A trial whose heartbeat is older than its grace period
  belongs to a process that died (SIGKILL, a node lost): the next sweeper that asks for a trial ends it as
  failed and Optuna's ``RetryHeartbeatStaleTrialCallback`` queues a copy (WAITING, same parameters), which the
  next ``ask`` of any process runs. Optuna's journal storage has no heartbeats: there, a dead process's trial
  stays RUNNING until its own sweep dir is run again (the runner's adoption).
- **What the processes share** lives in the study's user attributes: the pruner's settings, the epoch cap
  and the parent MLflow run.
"""

from __future__ import annotations

import logging
import threading
import warnings

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("hydrarl.sweep")

OWNER_ATTR = "hydrarl.sweep_dir"  # <host>:<sweep dir> of the sweeper that runs a trial
SURPLUS = "surplus"   # stop_reason of a trial asked for past n_trials, ended unrun
STALE_ERROR = "its sweeper stopped (no heartbeat within the grace period) and its retries are used up"
RETRY_ATTR = "failed_trial"  # Optuna's system attribute: the trial a retry replaces (RetryHeartbeatStaleTrialCallback)


def retried(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the failed trials a retry has replaced (each retry names its whole history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counting(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count towards ``n_trials``, in number order: every trial of every process (WAITING,
    RUNNING or finished) but surplus ones and failed ones whose retry is in the study."""
    trials = study.get_trials(deepcopy=False)
    replaced = retried(trials)
    return [t for t in trials if t.user_attrs.get("stop_reason") != SURPLUS
            and not (t.state == TrialState.FAIL and t.number in replaced)]


def is_surplus(study: optuna.Study, number: int, total: int) -> bool:
    """Whether trial ``number`` (just asked for, not a retry) lies past ``total`` among the counting trials,
    ranked by number (a retry in the place of the trial it replaces): another process took the last place at the
    same moment."""
    places = sorted(t.system_attrs.get(RETRY_ATTR, t.number) for t in counting(study))  # a retry holds its original's
    return number in places and places.index(number) >= total


def others_running(study: optuna.Study, owner: str) -> list[FrozenTrial]:
    """The study's RUNNING trials that processes other than ``owner`` run (or ran, if they died)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.user_attrs.get(OWNER_ATTR) != owner]


def fail_stale(study: optuna.Study) -> None:
    """End the RUNNING trials whose heartbeat went stale (their process died) as failed; each gets a WAITING
    retry. Nothing without heartbeats (journal storage, or heartbeats off)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)


def ask(study: optuna.Study, distributions: dict) -> optuna.Trial:
    """``study.ask`` (a WAITING retry first) without Optuna's warning that heartbeats are meant for ``optimize``:
    this runner records them itself (:class:`Heartbeat`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        return study.ask(distributions)


class Heartbeat:
    """Records a heartbeat for each trial this process runs, every ``interval`` seconds, from one thread.

    Call :meth:`add` as soon as a trial is asked for (a trial without a heartbeat is never stale) and
    :meth:`discard` once it is told. A storage without heartbeats makes this do nothing.
    """

    def __init__(self, storage: optuna.storages.BaseStorage):
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()  # an RDB storage, or its cache
        self.storage, self.interval = storage, interval
        self._trials: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.interval is not None

    def add(self, trial_id: int) -> None:
        if self.enabled:
            with self._lock:
                self._trials.add(trial_id)
            self._beat(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._trials.discard(trial_id)

    def _beat(self, trial_id: int) -> None:
        try:
            self.storage.record_heartbeat(trial_id)
        except Exception as exc:  # noqa: BLE001 - a storage hiccup: the next beat tries again
            log.warning("heartbeat of trial id %d not recorded: %s", trial_id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                trials = list(self._trials)
            for trial_id in trials:
                self._beat(trial_id)

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
