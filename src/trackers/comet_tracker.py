"""Comet sink: one Comet experiment per run, online when an API key is configured, else offline.

Offline experiments are written as ``<run dir>/<offline_directory>/<experiment key>.zip`` when the
run finishes; ``comet upload <zip>`` (or ``experiment/mlflow_to_comet.py`` from MLflow) sends them
later. Offline mode opens no network connection, so a sweep's workers never wait on Comet.

Nothing lost, nothing silent: an online experiment that cannot reach Comet falls back to an offline
archive in the same directory, and the run says so in one warning line naming the archive and the
command that uploads it. comet_ml itself does not raise when Comet is unreachable: ``Experiment()``
logs an error, retries for about 30 s and returns an object whose ``alive`` is False and which
drops everything logged to it. The tracker shortens those retries while the experiment starts
(:func:`_quick_handshake`), checks ``alive``, and opens an offline experiment instead. When the
connection drops later, comet_ml's own fallback streamer (which keeps a copy of every message aside)
writes the whole experiment to an archive when it ends; the online experiment is given the run's
offline directory for it, and the tracker hears of the archive through ``set_offline_zip_uploader``
(comet_ml calls it only after such a fallback).

Safe with parallel workers: ``comet_ml`` is imported only when this module is (``logger`` names
comet), inside the worker process that starts the run; every experiment is an explicit object (no global "current experiment" is used),
and Comet's automatic logging (stdout capture, framework hooks, environment, git patch, argv
parsing) is switched off: the tracker logs exactly what the Trainer hands it. The API key comes
from Comet's own configuration (``COMET_API_KEY`` or ``~/.comet.config``) and never enters
params, tags or artifacts.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import comet_ml
from comet_ml.config import get_config

from hydrarl.errors import UserError
from hydrarl.trackers.base import RunRecord, Tracker

log = logging.getLogger(__name__)


class _SupersededCometMessages(logging.Filter):
    """Drops comet_ml messages that are wrong for this tracker or that it words itself.

    The advice to import comet_ml before torch/mlflow is for automatic logging, which is off here;
    "Your experiment will not be logged" is untrue once the tracker falls back to offline; the
    fallback streamer's "offline experiment will be available for upload" is replaced by the
    tracker's own line (one line, naming the archive and the command).
    """

    SUPERSEDED = ("import comet_ml before", "Your experiment will not be logged",
                  "An offline experiment will be available for upload")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(text in message for text in self.SUPERSEDED)


for _name in ("comet_ml.experiment", "comet_ml._online", "comet_ml.streamer.fallback"):
    logging.getLogger(_name).addFilter(_SupersededCometMessages())

MODES = ("auto", "online", "offline")

# Everything comet_ml would log on its own is off: the tracker logs what the Trainer gives it.
_QUIET = dict(
    log_code=False, log_graph=False, auto_param_logging=False, auto_metric_logging=False, parse_args=False,
    auto_output_logging=False, log_env_details=False, log_git_metadata=False, log_git_patch=False,
    log_env_gpu=False, log_env_host=False, log_env_cpu=False, log_env_disk=False, display_summary_level=0,
)


# While an online experiment starts: one quick retry of each request instead of comet_ml's defaults
# (3 retries of the backend-version check with 4 s and 8 s waits, then 4 connection retries of
# experiment creation with jittered waits of up to 12 s: about 30 s before it reports no connection).
# A setting the user configured (environment or ~/.comet.config) is left as it is.
_HANDSHAKE_RETRIES = {"comet.http_session.retry_total": "1", "comet.get_or_add_experiment.retry_connect": "1"}


@contextmanager
def _quick_handshake() -> Iterator[None]:
    """Shorten comet_ml's connection retries for the duration of the block (an experiment's start).

    comet_ml reads its configuration afresh from the environment each time it builds a request
    session, so the settings are set as ``COMET_*`` variables and removed afterwards: the sessions
    that send the run's data later keep comet_ml's patient defaults.
    """
    config = get_config()
    names = {f"COMET_{key.removeprefix('comet.').replace('.', '_').upper()}": value
             for key, value in _HANDSHAKE_RETRIES.items() if config.get_config_origin(key) is None}
    os.environ.update(names)
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)


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

    An online experiment that cannot reach Comet, at its start or later, leaves its data in an
    offline archive in ``offline_directory`` instead (see the module docstring); ``fallback`` says
    which, and :meth:`finish` names the archive and the upload command in one warning.
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
        self.online = self._online()  # whether the run is meant to be online (Comet may still be out of reach)
        self.fallback: str | None = None  # "at_start" or "during_run" once an online run fell back to offline
        self.archive: Path | None = None  # the offline archive, once written

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
            self.experiment = self._start_online(previous, common)
        if self.experiment is None:
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
        log.info("comet: %s experiment %s in project %s", "offline" if self._is_offline else "online", self.run_id, project)

    @property
    def _is_offline(self) -> bool:
        """Whether the run records to an offline archive from its start (offline mode or a fallback)."""
        return not self.online or self.fallback == "at_start"

    def _start_online(self, previous: str | None, common: dict[str, Any]) -> Any:
        """The online experiment (new, or ``previous`` continued), or None when Comet cannot be reached.

        comet_ml reports a failed start only by ``alive`` being False (it logs an error and returns);
        such an experiment would drop everything logged to it, so it is ended and None returned. A
        started experiment is given the run's offline directory for comet_ml's fallback archive, and
        :meth:`_archive_after_lost_connection` as the callback that hears of that archive.
        """
        online = dict(offline_directory=str(self.offline_directory), **common)
        with _quick_handshake():
            experiment = (comet_ml.ExistingExperiment(previous_experiment=previous, **online) if previous
                          else comet_ml.Experiment(**online))
        if experiment.alive:
            experiment.set_offline_zip_uploader(self._archive_after_lost_connection)
            return experiment
        experiment.end()
        self.fallback = "at_start"
        log.info("comet: cannot reach Comet (see the COMET messages above); recording this run offline in %s",
                 self.offline_directory)
        return None

    def _archive_after_lost_connection(self, path: str) -> None:
        """comet_ml's offline-ZIP upload callback: called, at the end of an online experiment that
        lost its connection, with the archive of what could not be sent. Nothing is uploaded here;
        :meth:`finish` tells the user how to."""
        self.fallback, self.archive = "during_run", Path(path)

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
        experiment, key = self.experiment, self.experiment.get_key()
        experiment.end()
        if self._is_offline:  # experiment.offline_directory: a temporary one if comet_ml could not write to ours
            self.archive = self._offline_archive(Path(experiment.offline_directory), key)
        self.experiment = None
        if self.fallback == "at_start" and self.archive is not None:
            log.warning("comet: Comet was unreachable when the run started; its Comet data is in %s (upload it with: "
                        "comet upload %s)", self.archive, self.archive)
        elif self.fallback == "during_run":
            log.warning("comet: the connection to Comet was lost during the run; all its Comet data is in %s (upload it "
                        "with: comet upload --force-reupload %s)", self.archive, self.archive)
        elif self.archive is not None:
            log.info("comet: offline archive %s (upload it with: comet upload %s)", self.archive, self.archive)
        elif self._is_offline:
            log.warning("comet: the offline experiment %s wrote no archive in %s; see the COMET messages above",
                        key, self.offline_directory)

    @staticmethod
    def _offline_archive(directory: Path, key: str) -> Path | None:
        """The archive the offline experiment ``key`` wrote in ``directory`` when it ended: ``<key>.zip``,
        or ``<key>-<suffix>.zip`` for a continued experiment (the newest, if several)."""
        found = sorted(directory.glob(f"{key}*.zip"), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None
