"""Build environments from an env config (``conf/env/<name>.yaml``).

One copy: ``gymnasium.make(id, max_episode_steps, **kwargs)`` -> each wrapper in ``wrappers``
(instantiated with the env as first argument) -> SB3 ``Monitor`` (episode return/length as the
agent sees them). ``n_envs`` copies make a ``DummyVecEnv`` or ``SubprocVecEnv``; ``normalize``
adds ``VecNormalize``.

Training and evaluation copies: a wrapper entry may carry ``only: train`` or ``only: eval`` (popped
before instantiation); a training copy (``training=True``) skips the ``only: eval`` entries, an
evaluation copy (``training=False``: the Trainer's evaluation env, ``experiment/evaluate.py``, videos,
the round-trip check) the ``only: train`` ones. Both must give the same observation and action
spaces. CarRacing uses it to train with frame skip, clipped rewards and lenient early ends and to
evaluate on every frame with the true rewards.

Monitor placement: the Monitor records what sits below it. By default it is added outermost, so
``rollout/ep_rew_mean`` is the return the agent is trained on. A wrappers list may place it itself
(an entry ``_target_: stable_baselines3.common.monitor.Monitor``), e.g. below reward clipping and
frame skip so that ``rollout/ep_rew_mean`` is the true env return (and ``rollout/ep_len_mean``
counts env frames); then none is added.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from hydrarl.config import wrapper_only
from hydrarl.errors import MissingDependency, UserError, missing_module_name


def _wrap(env: gym.Env, wrapper_cfg: DictConfig, index: int) -> gym.Env:
    """``env`` in the wrapper ``env.wrappers.<index>`` describes (its ``only`` key dropped)."""
    spec = OmegaConf.to_container(wrapper_cfg, resolve=True)
    spec.pop("only", None)
    try:
        return instantiate(spec, env, _convert_="all")
    except InstantiationException as exc:
        if isinstance(exc.__cause__, UserError):
            raise exc.__cause__ from None
        if isinstance(exc.__cause__, TypeError):  # an unknown or missing key
            raise UserError(f"env.wrappers.{index} ({spec.get('_target_')}) cannot be built: {exc.__cause__}") from exc
        raise


def make_env(env_cfg: DictConfig, render_mode: str | None = None, training: bool = True) -> gym.Env:
    """One env copy with its wrappers and a Monitor; ``training=False`` builds an evaluation copy (see
    the module doc for ``only``). Raises UserError for unknown ids, missing extras, bad wrapper entries."""
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
    skip = "eval" if training else "train"
    monitored = False
    for index, wrapper_cfg in enumerate(env_cfg.wrappers):
        if wrapper_only(wrapper_cfg, index) == skip:
            continue
        env = _wrap(env, wrapper_cfg, index)
        monitored = monitored or isinstance(env, Monitor)
    return env if monitored else Monitor(env)


def make_vec_env(
    env_cfg: DictConfig,
    seed: int,
    n_envs: int | None = None,
    training: bool = True,
    render_mode: str | None = None,
) -> VecEnv:
    """``n_envs`` (default ``env_cfg.n_envs``) seeded copies; VecNormalize when configured.

    Copy i is reset with seed ``seed + i``. An evaluation env (``training=False``) leaves out the
    ``only: train`` wrappers (and takes the ``only: eval`` ones), freezes the normalisation statistics
    and reports raw rewards; sync them from the training env with
    SB3's ``sync_envs_normalization`` before evaluating. ``render_mode`` (e.g. ``rgb_array``) is
    passed to every copy.
    """
    n = env_cfg.n_envs if n_envs is None else n_envs
    make_one = partial(make_env, env_cfg, render_mode=render_mode, training=training)
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

