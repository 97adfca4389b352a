"""The one schema of the ``rl_optuna`` sweeper's settings (the ``hydra.sweeper`` keys).

The Hydra plugin (``hydra_plugins/rl_optuna_sweeper``) registers it as ``hydra/sweeper=rl_optuna``, so
``+search=`` presets and the command line are checked against it; :class:`hydrarl.sweep.runner.SweepRunner`
takes an instance of it and checks its values with :meth:`RLOptunaSweeperConf.validate` before anything is
recorded. It lives here, below the plugin, which imports the search engine and not the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import NoneType, UnionType
from typing import Any, get_args, get_type_hints

from hydrarl.config.validate import METRIC_SOURCES, is_metric_name
from hydrarl.errors import UserError
from hydrarl.training.result import TrialResult
from hydrarl.values import is_integer, is_number

SWEEPER_TARGET = "hydra_plugins.rl_optuna_sweeper.rl_optuna_sweeper.RLOptunaSweeper"
DIRECTIONS = ("maximize", "minimize")
AGGREGATES = ("mean", "iqm")


def result_fields() -> list[str]:
    """The TrialResult fields an objective can name: its numbers (``score``, ``best_mean``, ``num_timesteps`` ...)."""
    def numeric(hint: Any) -> bool:
        kinds = set(get_args(hint)) - {NoneType} if isinstance(hint, UnionType) else {hint}
        return bool(kinds) and kinds <= {int, float}

    return [name for name, hint in get_type_hints(TrialResult).items() if numeric(hint)]


def is_objective(name: str) -> bool:
    """Whether ``name`` is something a trial's TrialResult can hold: one of :func:`result_fields`, ``best_score``,
    or a metric name a run logs (``<source>/<name>``, the sources of ``hydrarl.config.validate.METRIC_SOURCES``).
    Whether a run does log a metric is known once it runs (a trial without it fails, naming it)."""
    return name in result_fields() or name == "best_score" or is_metric_name(name)


@dataclass
class RLOptunaSweeperConf:
    """The ``hydra.sweeper`` settings of an ``rl_optuna`` search (conf/search/ holds examples).

    Durations are in minutes; epochs are Trainer epochs (``trainer.eval_after_n_steps`` env steps each).
    """

    _target_: str = SWEEPER_TARGET
    _recursive_: bool = False  # a sampler's or pruner's {_target_: ...} is built by the sweeper, not when Hydra makes it
    study_name: str | None = None                # default: <env>-<algorithm>
    storage: str | None = None                   # SQLAlchemy URL; null: journal file in the sweep dir
    direction: Any = "maximize"                  # or [maximize, minimize, ...] with as many objectives
    objectives: Any = field(default_factory=lambda: ["score"])  # TrialResult fields or metric names
    n_trials: int = 20                           # the study's total over every invocation
    n_jobs: int = 1                              # trials at once, each its own process
    asynchronous: bool = True                    # false: wait for each batch of n_jobs trials
    sampler: Any = field(default_factory=lambda: {"name": "tpe", "seed": None})  # a seed is offset by the trials already in the study
    pruner: Any = field(default_factory=lambda: {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2})
    params: Any = None                           # {key: override-grammar expression}
    custom_search_space: str | None = None       # "module.function"(trial) -> {key: value}
    epoch_cap_factor: float | None = 1.5         # stop new trials at factor x the fewest epochs of early-stopped ones
    max_duration_minutes: float | None = None
    max_failure_rate: float | None = None        # stop once this share of finished trials failed (after 4)
    repeats: int = 1                             # seeds per configuration
    aggregate: str = "mean"                      # mean | iqm over the repeats
    seed: int = 0                                # first seed of the repeats
    reevaluate_top_k: int = 0                    # at the end, rerun the best k configurations ...
    reevaluate_repeats: int = 3                  # ... with this many fresh seeds
    heartbeat_seconds: int | None = 30           # RDB storages: a running trial's heartbeat interval; null: none
    grace_seconds: int | None = None             # a trial without a heartbeat this long is its dead process's (null: 2 x heartbeat)
    stale_retries: int = 1                       # how often a dead process's trial is run again (a WAITING copy)

    @property
    def directions(self) -> list[str]:
        """``direction`` as a list, one entry per objective."""
        return [self.direction] if isinstance(self.direction, str) else list(self.direction)

    def validate(self) -> None:
        """Check every value (not the sampler's, pruner's or space's: their builders do); a UserError naming
        the first bad key, its value and what is allowed, before the search records anything."""
        def bad(key: str, allowed: str) -> UserError:
            return UserError(f"hydra.sweeper.{key}={getattr(self, key)!r} is not allowed: {allowed}.")

        for key, least in (("n_trials", 1), ("n_jobs", 1), ("repeats", 1), ("reevaluate_top_k", 0),
                           ("reevaluate_repeats", 1), ("seed", 0)):
            value = getattr(self, key)
            if not is_integer(value) or value < least:
                raise bad(key, f"an integer >= {least}")
        for key in ("heartbeat_seconds", "grace_seconds"):
            value = getattr(self, key)
            if value is not None and (not is_integer(value) or value < 1):
                raise bad(key, "an integer number of seconds >= 1, or null")
        if self.heartbeat_seconds is not None and self.grace_seconds is not None and self.grace_seconds <= self.heartbeat_seconds:
            raise bad("grace_seconds", f"more than heartbeat_seconds={self.heartbeat_seconds} (a live trial beats that often)")
        if not is_integer(self.stale_retries) or self.stale_retries < 0:
            raise bad("stale_retries", "an integer >= 0")
        for key in ("epoch_cap_factor", "max_duration_minutes"):
            value = getattr(self, key)
            if value is not None and (not is_number(value) or value <= 0):
                raise bad(key, "a number > 0, or null for none")
        if self.max_failure_rate is not None and (not is_number(self.max_failure_rate) or not 0 <= self.max_failure_rate <= 1):
            raise bad("max_failure_rate", "a share between 0 and 1, or null for none")
        if self.aggregate not in AGGREGATES:
            raise bad("aggregate", " or ".join(AGGREGATES))
        if not isinstance(self.direction, (str, list, tuple)) or not self.directions or \
                any(d not in DIRECTIONS for d in self.directions):
            raise bad("direction", "maximize or minimize, or a list of them (one per objective)")
        if not isinstance(self.objectives, (list, tuple)) or not self.objectives or \
                not all(isinstance(name, str) and name for name in self.objectives):
            raise bad("objectives", "a non-empty list of TrialResult fields or metric names, e.g. [score]")
        unknown = [name for name in self.objectives if not is_objective(name)]
        if unknown:
            raise bad("objectives", f"{', '.join(map(repr, unknown))} is neither a TrialResult field nor a metric a run "
                                    f"logs; give {', '.join(result_fields())}, best_score, or a metric name starting with "
                                    f"{', '.join(p + '/' for p in METRIC_SOURCES)} (e.g. eval/mean_reward)")
        if len(self.objectives) != len(self.directions):
            raise UserError(f"hydra.sweeper: {len(self.directions)} direction(s) {self.directions} for "
                            f"{len(self.objectives)} objective(s) {list(self.objectives)}; give one direction per objective.")
