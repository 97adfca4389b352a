"""The ``rl_optuna`` sweeper as Hydra sees it: its config schema registered and a thin Sweeper class.

Select it with ``+search=<Env>/<algo>`` (conf/search/) or ``hydra/sweeper=rl_optuna``. The
search itself lives in :mod:`hydrarl.sweep` (runner, jobs, results); the schema of the
``hydra.sweeper`` keys is :class:`hydrarl.sweep.settings.RLOptunaSweeperConf`, which the runner takes.
"""

from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydrarl.sweep.settings import RLOptunaSweeperConf

ConfigStore.instance().store(group="hydra/sweeper", name="rl_optuna", node=RLOptunaSweeperConf, provider="hydrarl")


class RLOptunaSweeper(Sweeper):
    """Hands the composed config, its ``hydra.sweeper`` settings and the command line to
    :func:`hydrarl.sweep.hydra_sweep.run_search`."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings  # the fields of RLOptunaSweeperConf (less _target_), resolved in run_search
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config

    def sweep(self, arguments: list) -> None:
        from hydrarl.sweep.hydra_sweep import run_search

        run_search(self.config, self.settings, arguments)
