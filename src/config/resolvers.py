"""The OmegaConf resolvers ``conf/`` uses.

Resolvers (registered on import):
- ``${project_root:}``: the repository root (runs/, mlflow.db and mlruns/ live there).
- ``${mlflow_store:}``: ``$MLFLOW_TRACKING_URI``, else the project's ``mlflow.db`` (``hydrarl.paths``).
- ``${recurrent_policy:<alias>}``: the LSTM variant of an SB3 policy alias (MlpPolicy -> MlpLstmPolicy).
- ``${fresh_dir:<parent>}``: a new ``<parent>/<date>_<time>[_n]`` of this process's own (``hydra.run.dir``,
  ``hydra.sweep.dir``): two runs started in the same second never share a run directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from hydrarl.errors import UserError
from hydrarl.paths import PROJECT_ROOT, claim_new_dir, default_tracking_uri

_RECURRENT = {
    "MlpPolicy": "MlpLstmPolicy",
    "MultiInputPolicy": "MultiInputLstmPolicy",
    "CnnPolicy": "CnnLstmPolicy",
}


def _recurrent_policy(alias: str) -> str:
    if alias not in _RECURRENT:
        raise UserError(f"no recurrent policy for env.policy={alias}; known: {', '.join(_RECURRENT)}")
    return _RECURRENT[alias]


# (process id, parent) -> the folder fresh_dir claimed for it in that process.
_CLAIMED: dict[tuple[int, str], str] = {}
# (process id, parent) -> the folders that claim made: the claimed one, then each parent it had to make (deepest first).
_MADE: dict[tuple[int, str], list[Path]] = {}


def fresh_dir(parent: str) -> str:
    """A new ``<parent>/<date>_<time>`` (``_1``, ``_2`` ... when another process took it), made now
    (``hydrarl.paths.claim_new_dir``). Hydra resolves ``hydra.run.dir`` several times per process (the
    preflight's writable check, the run itself, each job of a multirun), and OmegaConf also resolves a value
    that a later config file overrides (a search preset's ``hydra.sweep.dir``): the same parent gives the same
    folder within a process, and a forked child claims its own. Claims the command does not use are undone by
    :func:`release_claims`."""
    key = (os.getpid(), parent)
    if key not in _CLAIMED:
        missing = [p for p in (Path(parent), *Path(parent).parents) if not p.exists()]
        claimed = claim_new_dir(Path(parent))
        if not claimed.is_dir():  # not made (read-only, full): left to the writable check, which names the cause
            return str(claimed)
        _CLAIMED[key] = str(claimed)
        _MADE[key] = [claimed, *missing]
    return _CLAIMED[key]


def release_claims(keep: Path | None = None) -> None:
    """Remove the folders :func:`fresh_dir` made in this process (each claimed folder and the parents made
    for it) that are still empty, except ``keep``'s claim: a refused command, or the claim of a setting the
    command overrides, leaves no folder behind. The names stay this process's: a later resolution gives the
    same path again (unmade)."""
    pid = os.getpid()
    kept = Path(keep).resolve() if keep is not None else None
    for key in [k for k in _MADE if k[0] == pid]:
        if kept is not None and Path(_CLAIMED[key]).resolve() == kept:
            continue
        for folder in _MADE.pop(key):
            try:
                folder.rmdir()
            except FileNotFoundError:  # already removed (a refused run's folder)
                continue
            except OSError:  # not empty: something else is in it, and in its parents
                break


def register_resolvers() -> None:
    """Register the project's resolvers once (safe to call again)."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("mlflow_store"):
        OmegaConf.register_new_resolver("mlflow_store", default_tracking_uri)
    if not OmegaConf.has_resolver("recurrent_policy"):
        OmegaConf.register_new_resolver("recurrent_policy", _recurrent_policy)
    if not OmegaConf.has_resolver("fresh_dir"):
        OmegaConf.register_new_resolver("fresh_dir", fresh_dir)


register_resolvers()
