"""The one schema of the ``rl_optuna`` sweeper's settings (the ``hydra.sweeper`` keys).

The Hydra plugin (``hydra_plugins/rl_optuna_sweeper``) registers it as ``hydra/sweeper=rl_optuna``, so
``+search=`` presets and the command line are checked against it; :class:`hydrarl.sweep.runner.SweepRunner`
takes an instance of it and checks its values with :meth:`RLOptunaSweeperConf.validate` before anything is
recorded. It lives here, below the plugin, which imports the search engine and not the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydrarl.errors import UserError

SWEEPER_TARGET = "hydra_plugins.rl_optuna_sweeper.rl_optuna_sweeper.RLOptunaSweeper"
DIRECTIONS = ("maximize", "minimize")
AGGREGATES = ("mean", "iqm")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class RLOptunaSweeperConf:
    """The ``hydra.sweeper`` settings of an ``rl_optuna`` search (conf/search/ holds examples).

    Durations are in minutes; epochs are Trainer epochs (``trainer.eval_after_n_steps`` env steps each).
    """

    _target_: str = SWEEPER_TARGET
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
            if not _is_int(value) or value < least:
                raise bad(key, f"an integer >= {least}")
        for key in ("epoch_cap_factor", "max_duration_minutes"):
            value = getattr(self, key)
            if value is not None and (not _is_number(value) or value <= 0):
                raise bad(key, "a number > 0, or null for none")
        if self.max_failure_rate is not None and (not _is_number(self.max_failure_rate) or not 0 <= self.max_failure_rate <= 1):
            raise bad("max_failure_rate", "a share between 0 and 1, or null for none")
        if self.aggregate not in AGGREGATES:
            raise bad("aggregate", " or ".join(AGGREGATES))
        if not isinstance(self.direction, (str, list, tuple)) or not self.directions or \
                any(d not in DIRECTIONS for d in self.directions):
            raise bad("direction", "maximize or minimize, or a list of them (one per objective)")
        if not isinstance(self.objectives, (list, tuple)) or not self.objectives or \
                not all(isinstance(name, str) and name for name in self.objectives):
            raise bad("objectives", "a non-empty list of TrialResult fields or metric names, e.g. [score]")
        if len(self.objectives) != len(self.directions):
            raise UserError(f"hydra.sweeper: {len(self.directions)} direction(s) {self.directions} for "
                            f"{len(self.objectives)} objective(s) {list(self.objectives)}; give one direction per objective.")
