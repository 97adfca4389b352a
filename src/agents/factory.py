"""Build the agent an algorithm config describes, for a given env.

The config is ``_target_`` plus constructor keyword arguments (``conf/algorithm/<name>.yaml``).
The factory adds what depends on the run: ``env``, ``seed``, ``device`` (and completes an
``action_noise`` partial with the env's action space).

Two kinds of error, both naming the algorithm and the env: :class:`~hydrarl.errors.Incompatible` when this
algorithm cannot act in this env (its action or observation space, the goal interface HER needs, a
controller made for other spaces), and :class:`~hydrarl.errors.MissingDependency` for an optional extra
that is not installed: the regression matrix counts only these two as refused pairs. Anything else wrong
with the algorithm config (a bad value, an unknown argument, a class that cannot be imported) is a plain
UserError: a fault of the config, whichever env it meets.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
from typing import Any

from gymnasium import spaces
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv

from hydrarl.errors import Incompatible, MissingDependency, UserError

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")
# The policy aliases an env config chooses for its observations (``env.policy``: vectors, images, dicts) and
# their LSTM variants (``${recurrent_policy:}``): an algorithm lacking one cannot read that env's observations.
# Any other name an algorithm lacks is a mistake in the config.
OBSERVATION_POLICIES = frozenset({"MlpPolicy", "CnnPolicy", "MultiInputPolicy",
                                  "MlpLstmPolicy", "CnnLstmPolicy", "MultiInputLstmPolicy"})


def _not_installed(module: str | None) -> bool:
    """True when the top-level package of ``module`` is not installed (not: installed, with a wrong name inside)."""
    return bool(module) and importlib.util.find_spec(module.split(".")[0]) is None


def algorithm_class(algo_cfg: DictConfig, name: str) -> type:
    """The class ``_target_`` names. MissingDependency when it needs a package that is not installed; a
    UserError when it cannot be imported otherwise (a misspelt module or class)."""
    target = algo_cfg.get("_target_")
    if not target:
        raise UserError(f"algorithm={name} has no _target_ (the class to build).")
    try:
        return get_class(target)
    except Exception as exc:  # an ImportError, or Hydra's own error type wrapping one
        missing = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
        if isinstance(missing, ModuleNotFoundError) and _not_installed(missing.name):
            raise MissingDependency(f"algorithm={name} ({target})", missing.name) from exc
        raise UserError(f"algorithm={name}: cannot import _target_ {target}: {exc}") from exc


def apply_env_overrides(algo_cfg: DictConfig, env_cfg: DictConfig, name: str = "?") -> list[str]:
    """Set in ``env_cfg`` (in place) what the algorithm's class needs of every env it runs in (its
    ``env_overrides``: HAC compares goals in the env's units, so it turns off ``normalize``); returns a line per
    setting changed, for the log. The run's recorded config then holds the env as it was built."""
    changed = []
    for key, value in getattr(algorithm_class(algo_cfg, name), "env_overrides", {}).items():
        if env_cfg.get(key) != value:
            changed.append(f"algorithm={name} sets env.{key}={value} (the env config has {env_cfg.get(key)})")
            env_cfg[key] = value
    return changed


def accepted_kwargs(cls: type) -> list[str]:
    """The constructor's named arguments; where it passes ``**kwargs`` on (a subclass of an SB3 agent that adds its
    own), also those of the classes above it, and those its ``config_fields()`` lists."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names += [p for p in params if p not in ("self", "args", "kwargs") and p not in names]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break
    extra = getattr(cls, "config_fields", None)  # an agent passing **kwargs to a library's config (hydrarl.agents.offline)
    return names + [n for n in extra() if n not in names] if extra else names


def is_goal_space(space: spaces.Space) -> bool:
    """Whether ``space`` is a goal-conditioned env's observation space: a Dict with ``GOAL_KEYS``."""
    return isinstance(space, spaces.Dict) and all(k in space.spaces for k in GOAL_KEYS)


def _check_her(kwargs: dict[str, Any], env: VecEnv, name: str, env_name: str) -> None:
    buffer_cls = kwargs.get("replay_buffer_class")
    if buffer_cls is None or buffer_cls.__name__ != "HerReplayBuffer":
        return
    obs = env.observation_space
    if not is_goal_space(obs):
        raise Incompatible(
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
    """Instantiate the algorithm for ``env``. Incompatible when it cannot act in this env, MissingDependency
    for an extra not installed, UserError for anything else wrong with ``algo_cfg`` (see the module doc)."""
    cls = algorithm_class(algo_cfg, name)
    config = OmegaConf.to_container(algo_cfg, resolve=True)
    config.pop("_target_")
    accepted = accepted_kwargs(cls)
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise UserError(
            f"algorithm={name} ({cls.__name__}) has no argument {', '.join(unknown)}. "
            f"Accepted: {', '.join(a for a in accepted if a not in ('env', 'seed', 'device', 'verbose', '_init_setup_model'))}."
        )
    policy = config.get("policy")
    aliases = getattr(cls, "policy_aliases", {})
    if isinstance(policy, str) and aliases and policy not in aliases:
        if policy in OBSERVATION_POLICIES:
            raise Incompatible(
                f"algorithm={name} ({cls.__name__}) has no policy {policy}, which env={env_name} "
                f"needs for its {type(env.observation_space).__name__} observations; it offers {', '.join(aliases)}."
            )
        raise UserError(f"algorithm={name} ({cls.__name__}) has no policy {policy!r} (for env={env_name}); "
                        f"it offers {', '.join(aliases)}.")
    kwargs = instantiate(config, _convert_="all")
    noise = kwargs.get("action_noise")
    if isinstance(noise, functools.partial):
        if not isinstance(env.action_space, spaces.Box):
            raise Incompatible(f"algorithm={name} adds action noise, which needs Box actions; env={env_name} has {env.action_space}.")
        kwargs["action_noise"] = noise(action_space=env.action_space)
    _check_her(kwargs, env, name, env_name)
    try:
        return cls(env=env, seed=seed, device=device, verbose=0, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure is mapped, or re-raised as it is (a bug)
        raise _construction_error(exc, cls, config, env, name, env_name) from exc


def _construction_error(exc: Exception, cls: type, config: dict[str, Any], env: VecEnv, name: str,
                        env_name: str) -> Exception:
    """What the constructor's failure ``exc`` means for the user; ``exc`` itself when it is no input fault.

    - a UserError of the agent (a controller refusing the env's spaces, a bad setting): the same kind, naming the pair;
    - a failure while the policy is built (e.g. a negative layer width inside torch): a fault of
      ``algorithm.policy_kwargs``;
    - SB3's check of supported action spaces: Incompatible;
    - another AssertionError or ValueError whose message names constructor arguments (``batch_size must be
      greater than 1``): a fault of those ``algorithm.<key>``, with what SB3 allows;
    - MemoryError: the replay buffer does not fit (``algorithm.buffer_size``).
    """
    text = str(exc).strip()
    pair = f"algorithm={name} ({cls.__name__})"
    if isinstance(exc, MissingDependency):
        return exc
    if isinstance(exc, Incompatible):
        return Incompatible(f"{pair} cannot act in env={env_name}: {text}")
    if isinstance(exc, UserError):
        return UserError(f"{pair} cannot be built for env={env_name}: {text}")
    if _raised_building_policy(exc, cls, config.get("policy")):
        return UserError(f"algorithm.policy_kwargs={config.get('policy_kwargs')} cannot build the policy of {pair} "
                         f"for env={env_name}: {type(exc).__name__}: {text.splitlines()[0] if text else ''}; give "
                         "arguments the policy accepts (e.g. net_arch: a list of positive layer widths).")
    if isinstance(exc, AssertionError) and "action space" in text:  # SB3's check of the supported action spaces
        supported = re.findall(r"<class '[\w.]+\.(\w+)'>", text)
        return Incompatible(f"{pair} cannot act in env={env_name}: it supports "
                            f"{' or '.join(supported) or 'other'} actions, the env has {env.action_space}.")
    if isinstance(exc, MemoryError):  # numpy refuses a replay buffer larger than the machine
        return UserError(f"{pair} cannot be built for env={env_name}: {exc}. Its replay buffer does not fit in memory; "
                         f"set a smaller algorithm.buffer_size (now {config.get('buffer_size', '?')}).")
    if isinstance(exc, AssertionError | ValueError | KeyError):
        named = [key for key in config if key != "policy" and re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", text)]
        if named:
            values = ", ".join(f"algorithm.{key}={config[key]!r}" for key in named)
            return UserError(f"{values} is not allowed for {pair} (env={env_name}): {text}")
        return UserError(f"{pair} cannot be built for env={env_name}: {text}")
    return exc


def _raised_building_policy(exc: BaseException, cls: type, policy: object) -> bool:
    """Whether ``exc`` was raised building ``cls``'s policy from ``policy_kwargs``: inside the constructor of an SB3
    policy (its networks), or calling it with an argument it lacks."""
    policy_class = getattr(cls, "policy_aliases", {}).get(policy) if isinstance(policy, str) else policy
    if (isinstance(exc, TypeError) and isinstance(policy_class, type)
            and str(exc).startswith(f"{policy_class.__name__}.__init__()")):
        return True
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), BasePolicy):
            return True
        tb = tb.tb_next
    return False
