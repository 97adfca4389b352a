"""The one schema of the ``rl_optuna`` sweeper's settings (the ``hydra.sweeper`` keys).

The Hydra plugin (``hydra_plugins/rl_optuna_sweeper``) registers it as ``hydra/sweeper=rl_optuna``, so
``+search=`` presets and the command line are checked against it; :class:`hydrarl.sweep.runner.SweepRunner`
takes an instance of it. It lives here, below the plugin, which imports the search engine and not the
other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SWEEPER_TARGET = "hydra_plugins.rl_optuna_sweeper.rl_optuna_sweeper.RLOptunaSweeper"


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
    sampler: Any = field(default_factory=lambda: {"name": "tpe", "seed": None})
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
