"""The tracker interface, the composite the Trainer talks to, and the factory."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hydrarl.errors import MissingDependency, UserError
from hydrarl.status import Status

log = logging.getLogger(__name__)


@dataclass
class RunRecord:
    """What a tracker needs to open (or re-open) a run."""

    run_dir: Path
    run_name: str
    params: dict[str, Any]            # flattened resolved config
    tags: dict[str, str]
    resume_ids: dict[str, str] = field(default_factory=dict)  # tracker name -> its run id, when resuming


class Tracker:
    """One sink for a run's params, per-epoch metrics and files. Subclasses override what they support."""

    name = "tracker"

    def start(self, record: RunRecord) -> None:
        """Open the run (or re-open ``record.resume_ids[self.name]``)."""

    @property
    def run_id(self) -> str | None:
        """An id that re-opens this run on resume, if the tracker has one."""
        return None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record scalar metrics at ``step`` (env steps)."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Keep a copy of a file with the run."""

    def log_model(self, path: Path, name: str) -> None:
        """Keep a model file (``model.zip``, ``vecnormalize.pkl``) under ``name`` (best_model, final_model)."""
        self.log_artifact(path, name)

    def log_video(self, path: Path, step: int) -> None:
        """Keep an MP4 of evaluation episodes recorded at ``step`` (env steps)."""
        self.log_artifact(path, "videos")

    def record_error(self, cause: str) -> None:
        """Record with the run the one-line cause of its failure (called before ``finish(failed)``)."""

    def finish(self, status: str) -> None:
        """Close the run as ``status`` (a :class:`Status`: TrialResult.status, or killed for an interrupted run)."""


class Trackers(Tracker):
    """Fan-out to every enabled tracker. A tracker that fails while logging is reported, not fatal."""

    name = "trackers"

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def start(self, record: RunRecord) -> None:
        """Open the run in each tracker; if one fails, the runs already opened end FAILED before the error
        propagates (none is left RUNNING)."""
        started: list[Tracker] = []
        for tracker in self.trackers:
            try:
                tracker.start(record)
            except BaseException as exc:
                Trackers(started).record_error(f"{tracker.name} tracker failed to start: {type(exc).__name__}: {exc}")
                Trackers(started).finish(Status.FAILED)
                raise
            started.append(tracker)

    @property
    def ids(self) -> dict[str, str]:
        return {t.name: t.run_id for t in self.trackers if t.run_id}

    def _each(self, method: str, *args) -> None:
        for tracker in self.trackers:
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # noqa: BLE001 - a tracker outage must not kill training
                log.warning("%s tracker: %s failed: %s", tracker.name, method, exc)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._each("log_metrics", metrics, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).exists():
            self._each("log_artifact", Path(path), artifact_path)

    def log_model(self, path: Path, name: str) -> None:
        if Path(path).exists():
            self._each("log_model", Path(path), name)

    def log_video(self, path: Path, step: int) -> None:
        self._each("log_video", Path(path), step)

    def record_error(self, cause: str) -> None:
        self._each("record_error", cause)

    def finish(self, status: str) -> None:
        self._each("finish", Status(status))


def make_trackers(logger_cfg: DictConfig | None, run_dir: Path) -> Trackers:
    """Build the trackers named in ``cfg.logger`` (keys: mlflow, comet, csv, tensorboard)."""
    trackers: list[Tracker] = []
    for name, options in (logger_cfg or {}).items():
        if name == "mlflow":
            from hydrarl.trackers.mlflow_tracker import MlflowTracker

            trackers.append(MlflowTracker(**options))
        elif name == "comet":
            try:
                from hydrarl.trackers.comet_tracker import CometTracker
            except ImportError as exc:
                raise MissingDependency("logger comet", "comet_ml") from exc
            trackers.append(CometTracker(run_dir, **options))
        elif name == "csv":
            from hydrarl.trackers.csv_tracker import CsvTracker

            trackers.append(CsvTracker(run_dir / options.filename))
        elif name == "tensorboard":
            try:
                from hydrarl.trackers.tensorboard_tracker import TensorBoardTracker
            except ImportError as exc:
                raise MissingDependency("logger tensorboard", "tensorboard") from exc
            trackers.append(TensorBoardTracker(run_dir / options.log_dir))
        else:
            raise UserError(f"logger={name} is unknown; available: mlflow, comet, csv, tensorboard.")
    return Trackers(trackers)
