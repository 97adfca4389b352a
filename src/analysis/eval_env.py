"""``experiment/evaluate.py --env 'NAME [env.KEY=VALUE ...]'``: the env config saved runs play in instead of their own,
and the check that a model fits it (``hydrarl.analysis.evaluate_agents``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file

from hydrarl.errors import UserError


@dataclass(frozen=True)
class EnvChoice:
    """``--env 'NAME [env.KEY=VALUE ...]'``: the env config ``conf/env/NAME.yaml`` with the overrides, which the saved
    runs play in instead of their own."""

    name: str                       # as given, e.g. "BumpsTest" or "Cassie env.kwargs.speeds=[0.2,0.5,0.8]"
    cfg: DictConfig                 # its env config, composed and resolved


def env_choice(spec: str) -> EnvChoice:
    """The env config ``env=<NAME> <overrides>`` composes to, from ``spec`` = ``NAME [env.KEY=VALUE ...]``; a UserError
    listing the env options for an unknown name, or naming an override that is not of the env or does not apply."""
    from hydrarl.config.compose import compose_for

    name, *overrides = spec.split() or [""]
    outside = [o for o in overrides if not o.lstrip("+~").startswith("env.")]
    if outside:
        raise UserError(f"--env {spec!r}: {' '.join(outside)} is not an override of the env; give env.KEY=VALUE, "
                        "e.g. 'Cassie env.kwargs.speeds=[0.2,0.5,0.8]'.")
    cfg = compose_for("--env", spec, {"env": name}, overrides).env
    return EnvChoice(" ".join([name, *overrides]), OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))


def _one_line(space: object) -> str:
    """A space as text on one line (numpy wraps the bounds of long Boxes)."""
    return " ".join(str(space).split())


def play_env_config(choice: EnvChoice, run_env: DictConfig) -> DictConfig:
    """``choice``'s env config with the run's ``normalize`` setting: the checkpoint's statistics apply as in its run."""
    env_cfg = choice.cfg.copy()
    env_cfg.normalize = run_env.get("normalize")
    return env_cfg


def check_spaces(model_path: Path, cls: type[BaseAlgorithm], run_label: str, choice: EnvChoice, env_cfg: DictConfig) -> None:
    """A UserError naming the run and both sides' spaces unless the model's observation and action spaces equal
    those of ``env_cfg``'s env (wrapped as SB3 wraps it when loading), the check SB3's ``load`` makes."""
    from stable_baselines3.common.utils import check_for_correct_spaces

    from hydrarl.envs.factory import make_vec_env

    try:
        data, _, _ = load_from_zip_file(model_path, device="cpu")
        model_spaces = data["observation_space"], data["action_space"]
    except Exception as exc:  # noqa: BLE001  (a model that cannot be read is the user's input)
        raise UserError(f"{model_path} cannot be loaded as {cls.__name__}: {exc}") from exc
    env = cls._wrap_env(make_vec_env(env_cfg, 0, n_envs=1, training=False), verbose=0)
    try:
        env_spaces = env.observation_space, env.action_space
        try:
            check_for_correct_spaces(env, *model_spaces)
        except ValueError:
            raise UserError(
                f"--env {choice.name}: {model_path} ({run_label}) takes observation space {_one_line(model_spaces[0])} "
                f"and action space {_one_line(model_spaces[1])}, but {choice.name} has observation space "
                f"{_one_line(env_spaces[0])} and action space {_one_line(env_spaces[1])}; give an env with the same spaces."
            ) from None
    finally:
        env.close()
