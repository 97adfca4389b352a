"""The ``rl_optuna`` sweeper as Hydra sees it: its config schema and a thin Sweeper class.

Select it with ``+search=<Env>/<algo>`` (conf/search/) or ``hydra/sweeper=rl_optuna``. The
search itself lives in :mod:`hydrarl.sweep` (runner, jobs, results).
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class RLOptunaSweeperConf:
    _target_: str = "hydra_plugins.rl_optuna_sweeper.rl_optuna_sweeper.RLOptunaSweeper"
    study_name: Optional[str] = None           # default: <env>-<algorithm>
    storage: Optional[str] = None              # SQLAlchemy URL; null: journal file in the sweep dir
    direction: Any = "maximize"             # or [maximize, minimize, ...] with as many objectives
    objectives: Any = field(default_factory=lambda: ["score"])
    n_trials: int = 20                      # the study's total over every invocation
    n_jobs: int = 1                         # trials at once, each its own process
    asynchronous: bool = True               # false: wait for each batch of n_jobs trials
    sampler: Any = field(default_factory=lambda: {"name": "tpe", "seed": None})
    pruner: Any = field(default_factory=lambda: {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2})
    params: Any = None                      # {key: override-grammar expression}
    custom_search_space: Optional[str] = None  # "module.function"(trial) -> {key: value}
    epoch_cap_factor: Optional[float] = 1.5
    max_duration_minutes: Optional[float] = None
    max_failure_rate: Optional[float] = None
    repeats: int = 1
    aggregate: str = "mean"
    seed: int = 0
    reevaluate_top_k: int = 0
    reevaluate_repeats: int = 3


ConfigStore.instance().store(group="hydra/sweeper", name="rl_optuna", node=RLOptunaSweeperConf, provider="hydrarl")


class RLOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config

    def sweep(self, arguments: list) -> None:
        from hydrarl.sweep.hydra_sweep import run_search

        run_search(self.config, self.settings, arguments)
