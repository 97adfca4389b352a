"""Build environments from an env config (``conf/env/<name>.yaml``).

One copy: ``gymnasium.make(id, max_episode_steps, **kwargs)`` -> each wrapper in ``wrappers``
(instantiated with the env as first argument) -> SB3 ``Monitor`` (episode return/length as the
agent sees them). ``n_envs`` copies make a ``DummyVecEnv`` or ``SubprocVecEnv``; ``normalize``
adds ``VecNormalize``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from hydrarl.errors import MissingDependency, UserError, missing_module_name


def make_env(env_cfg: DictConfig, render_mode: str | None = None) -> gym.Env:
    """One env copy with its wrappers and a Monitor. Raises UserError for unknown ids or missing extras."""
    kwargs: dict[str, Any] = OmegaConf.to_container(env_cfg.kwargs, resolve=True) or {}
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(env_cfg.max_episode_steps)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(env_cfg.id, **kwargs)
    except gym.error.Error as exc:
        module = missing_module_name(exc)
        if module:
            raise MissingDependency(f"env id {env_cfg.id}", module) from exc
        raise UserError(f"env id {env_cfg.id!r} cannot be made: {exc}") from exc
    except ImportError as exc:
        raise MissingDependency(f"env id {env_cfg.id}", missing_module_name(exc) or str(exc)) from exc
    except TypeError as exc:
        raise UserError(f"env.kwargs do not fit {env_cfg.id}: {exc}") from exc
    for wrapper_cfg in env_cfg.wrappers:
        env = instantiate(wrapper_cfg, env, _convert_="all")
    return Monitor(env)


def make_vec_env(
    env_cfg: DictConfig,
    seed: int,
    n_envs: int | None = None,
    training: bool = True,
    render_mode: str | None = None,
) -> VecEnv:
    """``n_envs`` (default ``env_cfg.n_envs``) seeded copies; VecNormalize when configured.

    Copy i is reset with seed ``seed + i``. An evaluation env (``training=False``) freezes the
    normalisation statistics and reports raw rewards; sync them from the training env with
    SB3's ``sync_envs_normalization`` before evaluating. ``render_mode`` (e.g. ``rgb_array``) is
    passed to every copy.
    """
    n = env_cfg.n_envs if n_envs is None else n_envs
    make_one = partial(make_env, env_cfg, render_mode=render_mode)
    if env_cfg.vec_env == "subproc" and n > 1:
        make_one().close()  # a config error surfaces here with its message, not inside a worker
        venv: VecEnv = SubprocVecEnv([make_one] * n)
    else:
        venv = DummyVecEnv([make_one] * n)
    venv.seed(seed)
    if env_cfg.normalize is not None:
        options = OmegaConf.to_container(env_cfg.normalize, resolve=True)
        if not training:
            options.update(training=False, norm_reward=False)
        venv = VecNormalize(venv, **options)
    return venv

