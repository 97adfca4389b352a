"""MLflow sink: one run per job in the experiment of its env, through ``MlflowClient``.

No global ``mlflow.start_run`` state is used, so parallel workers never share a run. For a
``sqlite:///<dir>/mlflow.db`` store, new experiments keep their artifacts in ``<dir>/mlruns``
(what ``mlflow ui`` started in ``<dir>`` expects), wherever the job was started from.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import time
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

from hydrarl.errors import UserError
from hydrarl.status import Status
from hydrarl.trackers.base import RunRecord, Tracker


def sqlite_artifact_root(tracking_uri: str) -> Path | None:
    """``<dir>/mlruns`` for ``sqlite:///<dir>/<file>``; None for other stores."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlruns"


def ensure_experiment(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside a sqlite store) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = sqlite_artifact_root(tracking_uri)
    location = (root / re.sub(r"[^A-Za-z0-9_.-]", "_", name)).as_uri() if root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by a parallel worker
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, tracking_uri: str, experiment_name: str, run_name: str | None = None):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.client: MlflowClient | None = None
        self._run_id: str | None = None

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def start(self, record: RunRecord) -> None:
        try:
            with store_lock(self.tracking_uri):
                self.client = MlflowClient(tracking_uri=self.tracking_uri)
                experiment_id = ensure_experiment(self.client, self.tracking_uri, self.experiment_name)
        except Exception as exc:  # noqa: BLE001 - any store failure here is a bad URI or an unreachable store
            raise UserError(
                f"logger.mlflow.tracking_uri={self.tracking_uri} cannot be opened: {str(exc).splitlines()[0][:300]} "
                "Use a database URL such as sqlite:///mlflow.db or postgresql://..., or an http(s) tracking server."
            ) from exc
        resume_id = record.resume_ids.get(self.name)
        if resume_id:
            self._run_id = resume_id
            self.client.update_run(resume_id, status="RUNNING")
            self.client.set_tag(resume_id, "hydrarl.resumed", "true")
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

    def finish(self, status: str) -> None:
        if self.client is not None and self._run_id is not None:
            self.client.set_terminated(self._run_id, status=Status(status).mlflow)


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
