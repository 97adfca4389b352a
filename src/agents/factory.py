"""Build the agent an algorithm config describes, for a given env.

The config is ``_target_`` plus constructor keyword arguments (``conf/algorithm/<name>.yaml``).
The factory adds what depends on the run: ``env``, ``seed``, ``device`` (and completes an
``action_noise`` partial with the env's action space). Every mismatch between algorithm and env
that can be seen before training is reported as a UserError naming both.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

from gymnasium import spaces
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from hydrarl.errors import MissingDependency, UserError

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


def algorithm_class(algo_cfg: DictConfig, name: str) -> type:
    """The class ``_target_`` names; a UserError if it cannot be imported."""
    target = algo_cfg.get("_target_")
    if not target:
        raise UserError(f"algorithm={name} has no _target_ (the class to build).")
    try:
        return get_class(target)
    except ImportError as exc:
        module = getattr(exc, "name", None) or target.split(".")[0]
        raise MissingDependency(f"algorithm={name} ({target})", module) from exc
    except Exception as exc:  # Hydra wraps import failures in its own error types
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            raise MissingDependency(f"algorithm={name} ({target})", cause.name) from exc
        raise UserError(f"algorithm={name}: cannot import {target}: {exc}") from exc


def _accepted_kwargs(cls: type) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", "args", "kwargs")]


def _check_her(kwargs: dict[str, Any], env: VecEnv, name: str, env_name: str) -> None:
    buffer_cls = kwargs.get("replay_buffer_class")
    if buffer_cls is None or buffer_cls.__name__ != "HerReplayBuffer":
        return
    obs = env.observation_space
    if not (isinstance(obs, spaces.Dict) and all(k in obs.spaces for k in GOAL_KEYS)):
        raise UserError(
            f"algorithm={name} uses Hindsight Experience Replay, which needs a goal-conditioned env "
            f"(dict observations with {', '.join(GOAL_KEYS)}); env={env_name} has {type(obs).__name__} observations. "
            f"Use the algorithm without _her (e.g. algorithm={name.removesuffix('_her')}), or a Fetch env."
        )


def build_agent(
    algo_cfg: DictConfig,
    env: VecEnv,
    seed: int,
    device: str,
    name: str = "?",
    env_name: str = "?",
) -> BaseAlgorithm:
    """Instantiate the algorithm for ``env``; raise UserError on any pairing it cannot serve."""
    cls = algorithm_class(algo_cfg, name)
    config = OmegaConf.to_container(algo_cfg, resolve=True)
    config.pop("_target_")
    accepted = _accepted_kwargs(cls)
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise UserError(
            f"algorithm={name} ({cls.__name__}) has no argument {', '.join(unknown)}. "
            f"Accepted: {', '.join(a for a in accepted if a not in ('env', 'seed', 'device', 'verbose', '_init_setup_model'))}."
        )
    policy = config.get("policy")
    aliases = getattr(cls, "policy_aliases", {})
    if isinstance(policy, str) and aliases and policy not in aliases:
        raise UserError(
            f"algorithm={name} ({cls.__name__}) has no policy {policy}, which env={env_name} "
            f"needs for its {type(env.observation_space).__name__} observations; it offers {', '.join(aliases)}."
        )
    kwargs = instantiate(config, _convert_="all")
    noise = kwargs.get("action_noise")
    if isinstance(noise, functools.partial):
        if not isinstance(env.action_space, spaces.Box):
            raise UserError(f"algorithm={name} adds action noise, which needs Box actions; env={env_name} has {env.action_space}.")
        kwargs["action_noise"] = noise(action_space=env.action_space)
    _check_her(kwargs, env, name, env_name)
    try:
        return cls(env=env, seed=seed, device=device, verbose=0, **kwargs)
    except AssertionError as exc:
        if "action space" in str(exc):
            supported = re.findall(r"<class '[\w.]+\.(\w+)'>", str(exc))
            raise UserError(
                f"algorithm={name} ({cls.__name__}) cannot act in env={env_name}: it supports "
                f"{' or '.join(supported) or 'other'} actions, the env has {env.action_space}."
            ) from exc
        raise UserError(f"algorithm={name} cannot be built for env={env_name}: {exc}") from exc
    except (ValueError, KeyError) as exc:
        raise UserError(f"algorithm={name} cannot be built for env={env_name}: {exc}") from exc
    except MemoryError as exc:  # numpy refuses a replay buffer larger than the machine
        raise UserError(
            f"algorithm={name} cannot be built for env={env_name}: {exc}. Its replay buffer does not fit in memory; "
            f"set a smaller algorithm.buffer_size (now {kwargs.get('buffer_size', '?')})."
        ) from exc
