"""MLflow sink: one run per job in the experiment of its env, through ``MlflowClient``.

No global ``mlflow.start_run`` state is used, so parallel workers never share a run. For a
``sqlite:///<dir>/mlflow.db`` store, new experiments keep their artifacts in ``<dir>/mlruns``
(what ``mlflow ui`` started in ``<dir>`` expects), wherever the job was started from.

A failed run carries its one-line cause in the tag ``hydrarl.error``. A run whose process died without
ending it (SIGKILL, power loss) stays RUNNING in the store; :func:`close_stale_runs` ends such runs as
KILLED, telling them from live ones by the lock (``hydrarl.locks``) every live run holds on its run
directory, the ``run_dir`` tag of its MLflow run.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

from hydrarl.errors import UserError
from hydrarl.locks import DirLock, is_locked
from hydrarl.runinfo import HOST_TAG
from hydrarl.status import Status
from hydrarl.trackers.base import RunRecord, Tracker
from hydrarl.trackers.mlflow_view import TAG_PREFIX, browse_hint, publish_view, view_key, view_state, write_once

log = logging.getLogger("hydrarl")

# MLflow 3 marks an experiment of training runs with this tag (its UI 3.17 still opens on the GenAI pages
# unless the URL says otherwise: hydrarl.trackers.mlflow_view).
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
ERROR_TAG = "hydrarl.error"    # a failed run's one-line cause
RESUMED_TAG = "hydrarl.resumed"  # a run continued from its checkpoint (or re-opened by another process)
CLOSED_TAG = "hydrarl.closed"  # why close_stale_runs ended a run as KILLED
STALE = "closed as KILLED: RUNNING, but no live process holds its run directory (its process died: SIGKILL, power loss)"


def sqlite_artifact_root(tracking_uri: str) -> Path | None:
    """``<dir>/mlruns`` for ``sqlite:///<dir>/<file>`` (a relative ``<dir>``: from the working directory, as SQLite
    opens it); None for other stores."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).absolute().parent / "mlruns"


def absolute_store(tracking_uri: str) -> str:
    """``sqlite:///<path>`` with a relative path (``sqlite:///mlflow.db``: the working directory's) made absolute;
    other URIs as they are. MLflow keeps one store per URI string in a process, so a relative one would stay bound
    to the folder it was first opened in."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_absolute():
        return f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).absolute()}"
    return tracking_uri


def ensure_experiment(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside a sqlite store) if missing, marked as
    training runs (:data:`KIND_TAG`) and given the runs view (:mod:`hydrarl.trackers.mlflow_view`); an experiment
    made before the mark or the view existed gets them here, on its next run."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        root = sqlite_artifact_root(tracking_uri)
        location = (root / re.sub(r"[^A-Za-z0-9_.-]", "_", name)).as_uri() if root else None
        try:
            client.create_experiment(name, artifact_location=location,
                                     tags={KIND_TAG: TRAINING_KIND, TAG_PREFIX + view_key(): view_state()})
            return client.get_experiment_by_name(name).experiment_id
        except Exception:  # created meanwhile by a parallel worker
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.tags.get(KIND_TAG) != TRAINING_KIND:
        write_once(lambda: client.set_experiment_tag(experiment.experiment_id, KIND_TAG, TRAINING_KIND),
                   lambda: client.get_experiment(experiment.experiment_id).tags.get(KIND_TAG) == TRAINING_KIND)
    if experiment.tags.get(TAG_PREFIX + view_key()) != view_state():
        publish_view(client, experiment.experiment_id)
    return experiment.experiment_id


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, tracking_uri: str, experiment_name: str, run_name: str | None = None, study: str | None = None):
        """``study``: this is search ``study``'s parent run; its view is the search's (:mod:`mlflow_view`)."""
        self.tracking_uri, self.study = absolute_store(tracking_uri), study
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.client: MlflowClient | None = None
        self._run_id: str | None = None
        self.experiment_id: str | None = None

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def start(self, record: RunRecord) -> None:
        try:
            with store_lock(self.tracking_uri):
                self.client = MlflowClient(tracking_uri=self.tracking_uri)
                experiment_id = self.experiment_id = ensure_experiment(self.client, self.tracking_uri, self.experiment_name)
        except Exception as exc:  # noqa: BLE001 - any store failure here is a bad URI or an unreachable store
            raise UserError(
                f"logger.mlflow.tracking_uri={self.tracking_uri} cannot be opened: {str(exc).splitlines()[0][:300]} "
                "Use a database URL such as sqlite:///mlflow.db or postgresql://..., or an http(s) tracking server."
            ) from exc
        resume_id = record.resume_ids.get(self.name)
        if resume_id:
            self._run_id = resume_id
            _reopen(self.client, resume_id)
            return
        run = self.client.create_run(experiment_id, run_name=self.run_name or record.run_name, tags=record.tags)
        self._run_id = run.info.run_id
        params = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in record.params.items()]
        for i in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self._run_id, params=params[i : i + MAX_PARAMS_TAGS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self._run_id, metrics=batch[i : i + 1000])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self._run_id, str(path), artifact_path)

    def record_error(self, cause: str) -> None:
        if self.client is not None and self._run_id is not None:
            self.client.set_tag(self._run_id, ERROR_TAG, cause[:MAX_TAG_VAL_LENGTH])

    def finish(self, status: str) -> None:
        if self.client is not None and self._run_id is not None:
            self.client.set_terminated(self._run_id, status=Status(status).mlflow)
            log.info(browse_hint(self.tracking_uri, self.experiment_id, self.study))


def _reopen(client: MlflowClient, run_id: str) -> None:
    """Mark ``run_id`` RUNNING and resumed again, dropping an earlier end's reasons. Several processes may do
    this at once (the shared parent run of a search)."""
    client.update_run(run_id, status="RUNNING")
    tags = client.get_run(run_id).data.tags

    def holds(key: str, value: str | None) -> bool:
        return client.get_run(run_id).data.tags.get(key) == value

    if tags.get(RESUMED_TAG) != "true":
        write_once(lambda: client.set_tag(run_id, RESUMED_TAG, "true"), lambda: holds(RESUMED_TAG, "true"))
    for key in (CLOSED_TAG, ERROR_TAG):
        if key in tags:
            write_once(lambda key=key: client.delete_tag(run_id, key), lambda key=key: holds(key, None))


def _running_runs(client: MlflowClient, under: Path | None = None) -> Iterator:
    """The RUNNING runs of the store, in every active experiment, started on this machine (tag ``hydrarl.host``,
    or no such tag); with ``under``, those whose ``run_dir`` tag may lie under it (the server filters, so a shared
    store with thousands of live runs sends only these)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = "attributes.status = 'RUNNING'"
    if under is not None and "'" not in str(under):
        query += f" and tags.run_dir LIKE '{under.resolve()}%'"  # '_' matches any character: _is_under decides
    token, host = None, socket.gethostname()
    while experiments:
        page = client.search_runs(experiments, query, max_results=1000, page_token=token)
        yield from (run for run in page if run.data.tags.get(HOST_TAG, host) == host)  # another machine's paths are not ours to judge
        token = page.token
        if not token:
            break


def _is_under(path: Path, under: Path | None) -> bool:
    return under is None or path.resolve().is_relative_to(under.resolve())


def close_stale_runs(tracking_uri: str, under: Path | None = None, report: Callable[[str], None] = log.info) -> list[str]:
    """End as KILLED (tag ``hydrarl.closed`` saying why) the RUNNING runs of the store at ``tracking_uri``
    whose run directory (tag ``run_dir``; only those under ``under`` when given) no live process holds;
    return their ids. Each run directory's lock is taken while its runs are closed, so a run that starts or
    resumes there meanwhile is never closed. Runs without a ``run_dir`` tag are left alone. A sqlite store
    that does not exist yet holds nothing (and is not created). ``report`` gets one line per closed run.

    Call it before taking the lock of ``under`` (or of a directory in it) yourself: a directory whose lock
    this process holds counts as held by a live process, so its runs are left alone."""
    root = sqlite_artifact_root(tracking_uri)
    if root is not None and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        return []
    with store_lock(tracking_uri):  # a store another process is creating has its schema when the lock is free
        client = MlflowClient(tracking_uri=tracking_uri)
    by_dir: dict[Path, list] = {}
    for run in _running_runs(client, under):
        run_dir = run.data.tags.get("run_dir")
        if run_dir and _is_under(Path(run_dir), under):
            by_dir.setdefault(Path(run_dir), []).append(run)
    closed = []
    for run_dir, runs in by_dir.items():
        with _held(run_dir) as free:
            if not free:
                continue
            for run in runs:
                client.set_tag(run.info.run_id, CLOSED_TAG, STALE)
                client.set_terminated(run.info.run_id, status="KILLED")
                closed.append(run.info.run_id)
                report(f"closed {run.info.run_id} ({run.info.run_name}) as KILLED: no live process holds {run_dir}")
    return closed


@contextlib.contextmanager
def _held(run_dir: Path) -> Iterator[bool]:
    """Hold the lock of ``run_dir`` for the block; yields False (holding nothing) when a live process has it.
    A directory that no longer exists is held by nobody (and is not created)."""
    if not run_dir.is_dir():
        yield True
        return
    lock = DirLock(run_dir, "run directory")
    try:
        lock.acquire()
    except UserError:
        yield False
        return
    except OSError:  # a lock file that cannot be written (a read-only folder): ask without taking it
        yield not is_locked(run_dir)
        return
    try:
        yield True
    finally:
        lock.release()


@contextlib.contextmanager
def store_lock(tracking_uri: str):
    """For a sqlite store, hold ``<db>.lock`` exclusively: processes that open a new database at the
    same time would race on creating its schema (MLflow then fails with 'duplicate column')."""
    root = sqlite_artifact_root(tracking_uri)
    if root is None:
        yield
        return
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)  # creates the schema
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare_store(tracking_uri: str) -> None:
    """Create the store's schema now, in the parent of a multirun, before workers open it."""
    with store_lock(tracking_uri):
        MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
