"""Optuna samplers, pruners and storages built from sweeper config, by name or ``_target_``."""

from __future__ import annotations

import inspect
import random
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from hydrarl.errors import UserError
from hydrarl.sweep.space import grid_space

JOURNAL_FILE = "optuna_journal.log"
SCHEMA_ATTEMPTS = 5  # opening a new RDB storage from many processes at once


def _options(cfg: dict[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    cfg = dict(cfg or {})
    return cfg.pop("name", None), cfg


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler for ask-and-tell: it does not call ``study.stop()`` (legal only inside
    ``study.optimize``); the runner stops at ``grid_size`` trials instead."""

    def after_trial(self, study, trial, state, values) -> None:
        pass

    @property
    def grid_size(self) -> int:
        return len(self._all_grids)


NAMED_SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": AskTellGridSampler,
    "nsgaii": optuna.samplers.NSGAIISampler,
}
NAMED_PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
    "none": optuna.pruners.NopPruner,
}
SAMPLERS, PRUNERS = tuple(NAMED_SAMPLERS), tuple(NAMED_PRUNERS)


def make_sampler(cfg: dict[str, Any] | None, distributions: dict[str, BaseDistribution],
                 trials_before: int = 0) -> optuna.samplers.BaseSampler:
    """``{name: tpe|random|cmaes|gp|qmc|grid|nsgaii, seed: ..., <sampler kwargs>}`` or ``{_target_: ...}`` (which may
    be added over a preset's named sampler: ``+hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler``).

    tpe is multivariate by default (it models parameters jointly). A ``seed`` is offset by
    ``trials_before``, the trials the study already holds: a resumed search continues the sampler's random
    sequence instead of restarting it (with the preset's seed as such, a 5-trial study run as 3 + 2 trials
    proposed the first 2 configurations again). The same study run in the same steps is reproducible.
    """
    cfg = dict(cfg or {})
    seed = cfg.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise UserError(f"hydra.sweeper.sampler.seed={seed!r} is not allowed: an integer >= 0, or null.")
        cfg["seed"] = seed + trials_before
    if "_target_" in cfg:
        return _instantiate(_target_settings(cfg, NAMED_SAMPLERS), "sampler")
    name, options = _options(cfg)
    name = name or "tpe"
    if name not in NAMED_SAMPLERS:
        raise UserError(f"hydra.sweeper.sampler.name={name} is unknown; one of {', '.join(SAMPLERS)}, or give a _target_.")
    if name == "tpe":
        options = {"multivariate": True, **options}
    if name == "grid":
        return AskTellGridSampler(grid_space(distributions), **options)
    return _build(NAMED_SAMPLERS[name], options, "sampler")


def _target_settings(cfg: dict[str, Any], named: dict[str, type]) -> dict[str, Any]:
    """A ``{_target_: ...}`` sampler's or pruner's settings without what a preset's named one left in the same
    mapping (``name``, and settings of the ``named`` classes that the target does not take: ``n_startup_trials``
    beside a ThresholdPruner); any other key stays, so a misspelt argument is still an error."""
    try:
        accepted = set(inspect.signature(get_class(cfg["_target_"])).parameters)
    except Exception:  # noqa: BLE001  (not a class: instantiate names the fault)
        return cfg
    left = {"name"} | {p for cls in named.values() for p in inspect.signature(cls).parameters}
    return {k: v for k, v in cfg.items() if k == "_target_" or k in accepted or k not in left}


def make_pruner(cfg: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    """``{name: median|hyperband|successive_halving|wilcoxon|none, <pruner kwargs>}`` or ``{_target_: ...}`` (which may
    be added over a preset's named pruner: ``+hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner``)."""
    if cfg and "_target_" in cfg:
        return _instantiate(_target_settings(dict(cfg), NAMED_PRUNERS), "pruner")
    name, options = _options(cfg)
    name = name or "median"
    if name not in NAMED_PRUNERS:
        raise UserError(f"hydra.sweeper.pruner.name={name} is unknown; one of {', '.join(PRUNERS)}, or give a _target_.")
    if name == "none":
        return optuna.pruners.NopPruner()  # other pruners' settings (left from a preset) do not apply
    return _build(NAMED_PRUNERS[name], options, "pruner")


def _instantiate(cfg: dict[str, Any], what: str):
    """``{_target_: ...}`` built by Hydra; a UserError naming the key when it cannot be."""
    try:
        return instantiate(cfg)
    except InstantiationException as exc:
        reason = next((line for line in str(exc).splitlines() if line.strip()), repr(exc))
        raise UserError(f"hydra.sweeper.{what}._target_={cfg['_target_']} cannot be built: {reason}") from exc


def _build(cls: type, options: dict[str, Any], what: str):
    try:
        return cls(**options)
    except TypeError as exc:
        raise UserError(f"hydra.sweeper.{what}: {cls.__name__} does not take {sorted(options)}: {exc}") from exc


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """The storage string a job can reopen: a SQLAlchemy URL, or ``journal:<path>`` (default: the sweep dir's journal)."""
    if not storage:
        return f"journal:{Path(sweep_dir).resolve() / JOURNAL_FILE}"
    return storage


def check_storage(url: str) -> None:
    """A UserError unless ``url`` is ``journal:<path>`` or a SQLAlchemy URL whose database driver is installed;
    nothing is opened or created (a server is first reached when the study opens)."""
    if url.startswith("journal:"):
        return
    try:
        make_url(url).get_dialect().import_dbapi()
    except Exception as exc:  # noqa: BLE001 - not a URL, an unknown dialect, a driver that is not installed
        raise UserError(f"hydra.sweeper.storage={url} cannot be used ({exc}); give a SQLAlchemy URL whose driver is "
                        "installed, such as sqlite:///optuna.db, or null for a journal file in the sweep dir.") from exc


def engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for an RDB study: a database server gets no pool (a connection per operation, a
    few ms on a LAN), so each sweeper and trial holds a server connection only while it talks to the study. With
    pooling each process kept 2-3 open, and 64 sweepers with their trials filled PostgreSQL's 200 connections
    (docs/scaling.md). A sqlite file keeps SQLAlchemy's default."""
    if make_url(url).get_backend_name() == "sqlite":
        return {}
    return {"poolclass": NullPool}


def open_storage(url: str, heartbeat_seconds: int | None = None, grace_seconds: int | None = None,
                 stale_retries: int = 1) -> BaseStorage:
    """``journal:<path>`` -> a journal file (safe for many processes on one machine, or on a shared disk whose
    locks work); else an RDB URL. With ``heartbeat_seconds`` an RDB storage keeps heartbeats of running trials:
    one silent for ``grace_seconds`` (default twice the interval) is failed and run again up to ``stale_retries``
    times (:mod:`hydrarl.sweep.shared`). A sweeper opens it so; a trial's job needs no heartbeats."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # Optuna marks heartbeats experimental
        beats = {}
        if heartbeat_seconds:
            beats = {"heartbeat_interval": heartbeat_seconds, "grace_period": grace_seconds,
                     "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=stale_retries)}
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                return RDBStorage(url, engine_kwargs=engine_options(url), **beats)
            except Exception as exc:  # noqa: BLE001 - bad URL, missing driver, unreachable server, or a schema race
                if attempt + 1 < SCHEMA_ATTEMPTS and ("already exists" in str(exc) or "duplicate key" in str(exc)):
                    # processes opening a new database at once all create its tables: the losers try again
                    time.sleep(0.5 + random.random())
                    continue
                raise UserError(f"hydra.sweeper.storage={url} cannot be opened: {exc}") from exc
    raise AssertionError("unreachable")
