"""A trained run on disk: which ``model.zip`` a run directory (or a model path) names, and the run's config.

A run directory holds ``config.yaml`` (the resolved config the run trained with) and
``checkpoints/<name>/model.zip`` (``best``, ``last``, ``epoch_<k>``), with ``vecnormalize.pkl`` beside the model
where the env normalises. Used by ``experiment/evaluate.py``, ``plot_gait.py`` and the policy ensemble.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hydrarl.errors import UserError

MODEL = "model.zip"
NORMALIZATION = "vecnormalize.pkl"


def run_dir_of_model(model: Path) -> Path | None:
    """The run directory above ``<run>/checkpoints/<name>/model.zip`` (or any parent holding config.yaml)."""
    for parent in list(model.parents)[:4]:
        if (parent / "config.yaml").is_file():
            return parent
    return None


def load_run_config(run_dir: Path) -> DictConfig:
    """``<run_dir>/config.yaml``; a UserError when it cannot be read or is not a hydrarl run's."""
    try:
        cfg = OmegaConf.load(run_dir / "config.yaml")
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the user's input)
        raise UserError(f"{run_dir / 'config.yaml'} cannot be read: {exc}") from exc
    missing = [k for k in ("env", "algorithm", "env_name", "algorithm_name") if k not in cfg]
    if missing:
        raise UserError(f"{run_dir / 'config.yaml'} is not the config of a hydrarl run (no {', '.join(missing)}).")
    return cfg


def find_model(path: str | Path, checkpoint: str = "best") -> tuple[Path, Path, DictConfig]:
    """(run directory, model.zip, run config) of a run directory (its ``checkpoints/<checkpoint>/model.zip``) or of
    a ``model.zip`` inside one; a UserError naming what is missing otherwise."""
    given = Path(path)
    if given.is_dir() and (given / "config.yaml").is_file():
        run_dir = given
        model_path = run_dir / "checkpoints" / checkpoint / MODEL
        if not model_path.is_file():
            have = sorted(p.parent.name for p in (run_dir / "checkpoints").glob(f"*/{MODEL}"))
            raise UserError(f"{given}: no checkpoints/{checkpoint}/{MODEL} in this run"
                            + (f"; it has {', '.join(have)} (--checkpoint best|last, or give the model.zip)." if have else "."))
    elif given.is_file() and given.suffix == ".zip":
        model_path = given
        run_dir = run_dir_of_model(given)
        if run_dir is None:
            raise UserError(f"{given}: no run directory above this model (no config.yaml in its parents); "
                            "its config is needed to know the agent and its env.")
    else:
        raise UserError(f"{given} is not a run directory (a directory with config.yaml) or a model.zip inside one.")
    return run_dir, model_path, load_run_config(run_dir)


def read_normalization(path: Path):
    """The ``VecNormalize`` pickled at ``path`` (its statistics and settings, without an env). A file holding
    something else is a ValueError; an unreadable one raises what unpickling raises."""
    from stable_baselines3.common.save_util import load_from_pkl

    saved = load_from_pkl(path)
    if not hasattr(saved, "obs_rms"):
        raise ValueError(f"holds a {type(saved).__name__}, not normalisation statistics")
    return saved

