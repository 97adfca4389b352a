"""Comet sink: one Comet experiment per run, online when an API key is configured, else offline.

Offline experiments are written as ``<run dir>/<offline_directory>/<experiment key>.zip`` when the
run finishes; ``comet upload <zip>`` (or ``experiment/mlflow_to_comet.py`` from MLflow) sends them
later. Offline mode opens no network connection, so a sweep's workers never wait on Comet.

Safe with parallel workers: ``comet_ml`` is imported only when this module is (``logger`` names
comet), inside the worker process that starts the run; every experiment is an explicit object (no global "current experiment" is used),
and Comet's automatic logging (stdout capture, framework hooks, environment, git patch, argv
parsing) is switched off: the tracker logs exactly what the Trainer hands it. The API key comes
from Comet's own configuration (``COMET_API_KEY`` or ``~/.comet.config``) and never enters
params, tags or artifacts.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import comet_ml
from comet_ml.config import get_config

from hydrarl.errors import UserError
from hydrarl.trackers.base import RunRecord, Tracker

log = logging.getLogger(__name__)


class _NoImportOrderAdvice(logging.Filter):
    """comet_ml advises importing it before torch/mlflow for its automatic logging, which is off here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "import comet_ml before" not in record.getMessage()


logging.getLogger("comet_ml.experiment").addFilter(_NoImportOrderAdvice())

MODES = ("auto", "online", "offline")

# Everything comet_ml would log on its own is off: the tracker logs what the Trainer gives it.
_QUIET = dict(
    log_code=False, log_graph=False, auto_param_logging=False, auto_metric_logging=False, parse_args=False,
    auto_output_logging=False, log_env_details=False, log_git_metadata=False, log_git_patch=False,
    log_env_gpu=False, log_env_host=False, log_env_cpu=False, log_env_disk=False, display_summary_level=0,
)


def configured_api_key() -> str | None:
    """The API key from Comet's own configuration (environment or config file), if any."""
    return get_config().get_string(None, "comet.api_key") or None


def project_slug(name: str) -> str:
    """Comet project names are lower case letters, digits, '-' and '_'."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "hydrarl"


class CometTracker(Tracker):
    """Params, per-epoch metrics, the resolved config, models and videos of a run in Comet.

    ``mode``: ``auto`` (online when an API key is configured, else offline), ``online`` (a missing
    key is a UserError) or ``offline``. Tags: env, algorithm, seed and, in a sweep, ``study:<name>``
    and ``trial:<number>``, so a study's trials are found together in the env's project.
    """

    name = "comet"

    def __init__(self, run_dir: Path, mode: str = "auto", project_name: str | None = None, workspace: str | None = None,
                 offline_directory: str = "comet", tags: list[str] | None = None):
        if mode not in MODES:
            raise UserError(f"logger.comet.mode={mode} is not allowed; use one of: {', '.join(MODES)}.")
        self.mode, self.workspace, self.extra_tags = mode, workspace, list(tags or [])
        self.project_name = project_name
        self.offline_directory = Path(run_dir) / offline_directory
        self.experiment: Any = None
        self.online = self._online()

    @property
    def run_id(self) -> str | None:
        return self.experiment.get_key() if self.experiment is not None else None

    def _online(self) -> bool:
        key = configured_api_key()
        if self.mode == "online" and not key:
            raise UserError("logger.comet.mode=online but no Comet API key is configured: set COMET_API_KEY or add "
                            "api_key to ~/.comet.config, or use logger.comet.mode=offline.")
        return self.mode == "online" or (self.mode == "auto" and key is not None)

    def start(self, record: RunRecord) -> None:
        project = project_slug(self.project_name or record.tags.get("env", "hydrarl"))
        previous = record.resume_ids.get(self.name)
        common = dict(project_name=project, workspace=self.workspace, **_QUIET)
        if self.online:
            self.experiment = (comet_ml.ExistingExperiment(previous_experiment=previous, **common) if previous
                               else comet_ml.Experiment(**common))
        else:
            self.offline_directory.mkdir(parents=True, exist_ok=True)
            offline = dict(offline_directory=str(self.offline_directory), **common)
            self.experiment = (comet_ml.ExistingOfflineExperiment(previous_experiment=previous, **offline) if previous
                               else comet_ml.OfflineExperiment(**offline))
        if previous:
            self.experiment.log_other("hydrarl.resumed", True)
            return
        self.experiment.set_name(record.run_name)
        self.experiment.add_tags(self._tags(record.tags) + self.extra_tags)
        self.experiment.log_parameters(record.params)
        self.experiment.log_others({k: v for k, v in record.tags.items() if not k.startswith("mlflow.")})
        log.info("comet: %s experiment %s in project %s", "online" if self.online else "offline", self.run_id, project)

    @staticmethod
    def _tags(tags: dict[str, str]) -> list[str]:
        names = [tags[k] for k in ("env", "algorithm") if k in tags]
        if "seed" in tags:
            names.append(f"seed:{tags['seed']}")
        if "sweep.study" in tags:
            names += [f"study:{tags['sweep.study']}", f"trial:{tags['sweep.trial']}"]
        return names

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.experiment.log_metrics(metrics, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        name = f"{artifact_path}/{path.name}" if artifact_path else path.name
        self.experiment.log_asset(str(path), file_name=name)

    def log_model(self, path: Path, name: str) -> None:
        self.experiment.log_model(name, str(path))

    def log_video(self, path: Path, step: int) -> None:
        self.experiment.log_video(str(path), name=path.stem, step=step, format="mp4")

    def finish(self, status: str) -> None:
        if self.experiment is None:
            return
        self.experiment.log_other("hydrarl.status", str(status))
        self.experiment.end()
        if not self.online:
            log.info("comet: offline archive in %s (upload with `comet upload <zip>`)", self.offline_directory)
        self.experiment = None
