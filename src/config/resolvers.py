"""The OmegaConf resolvers ``conf/`` uses.

Resolvers (registered on import):
- ``${project_root:}``: the repository root (runs/, mlflow.db and mlruns/ live there).
- ``${mlflow_store:}``: ``$MLFLOW_TRACKING_URI``, else the project's ``mlflow.db`` (``hydrarl.paths``).
- ``${recurrent_policy:<alias>}``: the LSTM variant of an SB3 policy alias (MlpPolicy -> MlpLstmPolicy).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from hydrarl.errors import UserError
from hydrarl.paths import PROJECT_ROOT, default_tracking_uri

_RECURRENT = {
    "MlpPolicy": "MlpLstmPolicy",
    "MultiInputPolicy": "MultiInputLstmPolicy",
    "CnnPolicy": "CnnLstmPolicy",
}


def _recurrent_policy(alias: str) -> str:
    if alias not in _RECURRENT:
        raise UserError(f"no recurrent policy for env.policy={alias}; known: {', '.join(_RECURRENT)}")
    return _RECURRENT[alias]


def register_resolvers() -> None:
    """Register the project's resolvers once (safe to call again)."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("mlflow_store"):
        OmegaConf.register_new_resolver("mlflow_store", default_tracking_uri)
    if not OmegaConf.has_resolver("recurrent_policy"):
        OmegaConf.register_new_resolver("recurrent_policy", _recurrent_policy)


register_resolvers()
