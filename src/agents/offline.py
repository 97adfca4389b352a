"""Offline agents: d3rlpy's IQL, CQL and BC, learning from a recorded dataset inside our Trainer.

``algorithm=iql|cql|bc dataset=<folder>``: the agent is an SB3 ``BaseAlgorithm`` so that the Trainer's epochs,
evaluation in the env, checkpoints, resume, early stop, pruning, the MLflow record and ``experiment/evaluate.py``
serve it unchanged. What differs from an online agent:

- **learn(n) takes n gradient steps** on minibatches of the dataset (``num_timesteps`` counts gradient steps, so
  ``trainer.eval_after_n_steps`` is the gradient steps of an epoch); the env is never stepped by training, only by
  the Trainer's evaluation episodes.
- **The data** (:mod:`hydrarl.agents.offline_data`) is read at the first ``learn``: the dataset's episodes in
  aligned segments (rewards recomputed by the env where missing, glitched steps dropped whole), put into a d3rlpy
  replay buffer; d3rlpy's scalers are fitted on it there. The dataset must have the env's spaces.
- **Settings** are d3rlpy's config fields one-to-one (``IQLConfig``, ``CQLConfig``, ``BCConfig``: learning rates,
  ``batch_size``, ``expectile``, ``conservative_weight``, ...); scalers by name (``observation_scaler: standard``,
  ``action_scaler: min_max``, ``reward_scaler: standard``). Images are average-pooled by ``image_pool`` and read by
  a conv encoder with ``image_filters`` (d3rlpy's default encoder is made for 84 x 84 Atari frames and costs ~4 s a
  gradient step on a 80 x 320 camera crop here).
- **Saved with the model** (``model.zip``): the networks and optimiser states (SB3's ``policy`` and
  ``optimizers``), and d3rlpy's config with the fitted scalers. So the action scaling learnt from the dataset is
  the one undone when the model acts: ``predict`` returns actions in the env's own units, whatever loads it.

The env is built without VecNormalize (``env_overrides``): datasets hold the env's own observations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space, maybe_transpose
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import is_vectorized_observation

from hydrarl.agents.factory import is_goal_space
from hydrarl.agents.offline_data import RANDOM, check_dataset, dataset_segments, random_segments
from hydrarl.errors import Incompatible, UserError

log = logging.getLogger("hydrarl")

SCALERS = {  # our names -> d3rlpy.preprocessing classes, per kind
    "observation_scaler": {"standard": "StandardObservationScaler", "min_max": "MinMaxObservationScaler",
                           "pixel": "PixelObservationScaler"},
    "action_scaler": {"min_max": "MinMaxActionScaler"},
    "reward_scaler": {"standard": "StandardRewardScaler", "min_max": "MinMaxRewardScaler"},
}
IMAGE_KEY = "image"  # the entry of Dict observations the policy reads


def d3rlpy():
    """d3rlpy, imported on first use (~4.5 s), without the notice its legacy ``gym`` prints and its info logs."""
    import sys

    if "d3rlpy" not in sys.modules:
        import structlog

        with contextlib.redirect_stderr(io.StringIO()):
            import d3rlpy as module  # noqa: F401
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return sys.modules["d3rlpy"]


class OfflinePolicy(BasePolicy):
    """The policy slot: holds d3rlpy's networks (``nets``) so that SB3's save/load/set_parameters carry them. The
    agent acts through its own ``predict``."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, *args, **kwargs):
        super().__init__(observation_space, action_space)
        self.nets = th.nn.ModuleDict()

    def _predict(self, observation, deterministic: bool = False) -> th.Tensor:
        raise NotImplementedError("an offline agent acts through model.predict")


class OptimizerStates:
    """The optimisers of d3rlpy's networks as one object with ``state_dict``/``load_state_dict`` (SB3 saves it)."""

    def __init__(self, optimizers: dict[str, th.optim.Optimizer]):
        self.optimizers = optimizers

    def state_dict(self) -> dict[str, Any]:
        return {name: optim.state_dict() for name, optim in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        for name, optim in self.optimizers.items():
            optim.load_state_dict(state[name])


class OfflineAgent(BaseAlgorithm):
    """An offline agent (see the module doc). Subclasses name their d3rlpy config class (``config_class``)."""

    config_class: ClassVar[str]
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": OfflinePolicy, "CnnPolicy": OfflinePolicy, "MultiInputPolicy": OfflinePolicy}
    env_overrides: ClassVar[dict[str, Any]] = {"normalize": None}

    @classmethod
    def config_fields(cls) -> list[str]:
        """The d3rlpy config fields this agent takes as keyword arguments (the factory checks names against them)."""
        return [f.name for f in dataclasses.fields(getattr(d3rlpy().algos, cls.config_class))
                if f.name not in ("compile_graph",) and not f.name.endswith(("_factory",))]

    def __init__(
        self,
        policy: str | type[BasePolicy] = "MlpPolicy",
        env=None,
        dataset: str | None = None,
        reward: str = "dataset",
        max_ticks: float | None = 100.0,
        random_episodes: int = 10,
        image_pool: int = 8,
        image_filters: list[list[int]] | None = None,
        image_feature_size: int = 256,
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
        **config: Any,
    ) -> None:
        """``dataset``: a dataset folder (``experiment/collect.py``) or ``random``. ``reward``: ``dataset`` (its
        rewards; the env's where missing) | ``env`` (always the env's). ``max_ticks``: drop steps whose wheel ticks
        exceed it (counts; null: keep all). ``random_episodes``: episodes of ``dataset=random``. ``image_pool``:
        average-pooling factor of image observations; ``image_filters``: [channels, kernel, stride] per conv layer;
        ``image_feature_size``: the encoder's output. ``config``: d3rlpy config fields."""
        super().__init__(policy, env, learning_rate=0.0, verbose=verbose, device=device, seed=seed,
                         support_multi_env=True, supported_action_spaces=(spaces.Box,))
        if dataset is None and _init_setup_model:  # (SB3's load builds the model without settings, then restores them)
            raise UserError(f"algorithm={self.config_class.removesuffix('Config').lower()} trains offline from a dataset: "
                            "give dataset=<folder> (recorded by experiment/collect.py) or dataset=random.")
        if dataset not in (None, RANDOM) and _init_setup_model:
            check_dataset(dataset, self.env)  # there, with this env's spaces: before anything is recorded
        if reward not in ("dataset", "env"):
            raise UserError(f"algorithm.reward={reward!r} is not allowed: dataset (its rewards) | env (computed again by the env).")
        if not (isinstance(image_pool, int) and image_pool >= 1):
            raise UserError(f"algorithm.image_pool={image_pool!r} is not allowed: an integer >= 1 (pooling factor).")
        if dataset not in (None, RANDOM):
            dataset = str(Path(dataset).absolute())  # the same folder from a search's trial or a resume elsewhere
        self.dataset, self.reward, self.max_ticks, self.random_episodes = str(dataset), reward, max_ticks, random_episodes
        self.image_pool, self.image_filters = image_pool, image_filters or [[16, 4, 2], [32, 3, 2]]
        self.image_feature_size, self.config = image_feature_size, config
        self.data_summary: dict[str, Any] = {}
        self.d3rlpy_config: str | None = None  # d3rlpy's config as JSON, fitted scalers included (once fitted)
        if _init_setup_model:
            self._setup_model()

    # -- model ---------------------------------------------------------------------------------
    @property
    def _key(self) -> str | None:
        """For Dict observations, the entry the policy reads (``image``; the others, e.g. the wheel ticks, serve
        the data's cleaning only); None for array observations."""
        return IMAGE_KEY if isinstance(self.observation_space, spaces.Dict) else None

    def _policy_space(self) -> spaces.Box:
        """The observations the policy reads: the env's, or the ``image`` entry of a Dict of them."""
        space = self.observation_space
        if isinstance(space, spaces.Dict) and IMAGE_KEY in space.spaces and not is_goal_space(space):
            space = space[IMAGE_KEY]
        if not isinstance(space, spaces.Box):
            why = "goal-conditioned dict" if is_goal_space(space) else type(space).__name__
            raise Incompatible(f"offline agents here read one array observation (a vector, an image, or the image of a "
                               f"dict with one); this env has {why} observations.")
        return space

    def _input_space(self) -> spaces.Box:
        """The observation space d3rlpy sees: the policy's (channel-first images average-pooled by ``image_pool``)."""
        space = self._policy_space()
        if not self._is_image():
            return space
        c, h, w = space.shape
        p = self.image_pool
        return spaces.Box(0, 255, (c, h // p, w // p), np.uint8)

    def _is_image(self) -> bool:
        return is_image_space(self._policy_space(), check_channels=False, normalized_image=False)

    def _policy_input(self, observations) -> np.ndarray:
        """What d3rlpy reads of a batch of env observations (channel-last images too): the policy's entry,
        channel-first, pooled."""
        if self._key is not None:
            observations = observations[self._key]
        return self._pool(maybe_transpose(np.asarray(observations), self._policy_space()))

    def _make_algo(self):
        d3 = d3rlpy()
        if self.d3rlpy_config is not None:  # a loaded model: its config, fitted scalers included
            return getattr(d3.algos, self.config_class).deserialize(self.d3rlpy_config).create(device=self._torch_device())
        options = dict(self.config)
        _check_types(getattr(d3.algos, self.config_class), options)
        for key, names in SCALERS.items():
            name = options.get(key)
            if name is not None:
                if name not in names:
                    raise UserError(f"algorithm.{key}={name!r} is not allowed: null | {' | '.join(names)}.")
                options[key] = getattr(d3.preprocessing, names[name])()
        if self._is_image():
            encoder = d3.models.PixelEncoderFactory(filters=self.image_filters, feature_size=self.image_feature_size)
            for field in dataclasses.fields(getattr(d3.algos, self.config_class)):
                if field.name.endswith("encoder_factory"):
                    options[field.name] = encoder
        try:
            return getattr(d3.algos, self.config_class)(**options).create(device=self._torch_device())
        except (TypeError, ValueError, AssertionError) as exc:
            raise UserError(f"algorithm settings {options} are refused by d3rlpy's {self.config_class}: {exc}") from exc

    def _torch_device(self) -> str:
        return "cuda:0" if self.device.type == "cuda" else "cpu:0"

    def _setup_model(self) -> None:
        space = self._input_space()
        self._algo = self._make_algo()
        self._algo.create_impl(space.shape, int(np.prod(self.action_space.shape)))
        self.policy = OfflinePolicy(self.observation_space, self.action_space).to(self.device)
        modules = self._algo.impl.modules
        for field in dataclasses.fields(modules):
            value = getattr(modules, field.name)
            if isinstance(value, th.nn.Module):
                self.policy.nets[field.name] = value
        self.optimizers = OptimizerStates({f.name: getattr(modules, f.name).optim for f in dataclasses.fields(modules)
                                           if hasattr(getattr(modules, f.name), "optim")})
        self._buffer = None

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "optimizers"], []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_algo", "_buffer", "optimizers"]

    # -- data ----------------------------------------------------------------------------------
    def _pool(self, observations: np.ndarray) -> np.ndarray:
        """A batch of channel-first images averaged over ``image_pool`` x ``image_pool`` blocks (uint8)."""
        if not self._is_image() or self.image_pool == 1:
            return observations
        n, c, h, w = observations.shape
        p = self.image_pool
        blocks = observations[:, :, : h // p * p, : w // p * p].reshape(n, c, h // p, p, w // p, p)
        return np.round(blocks.mean(axis=(3, 5))).astype(np.uint8)

    def _prepare_data(self) -> None:
        """Read the dataset into d3rlpy's replay buffer (once per process) and fit the scalers (once per run)."""
        if self.dataset == RANDOM:
            segments = random_segments(self.env, self.random_episodes, self.seed or 0)
            summary = {"episodes": self.random_episodes, "steps": sum(map(len, segments)), "random": True}
        else:
            segments, summary = dataset_segments(self.dataset, self.env, self.reward, self.max_ticks)
        if self.data_summary and summary.get("version") != self.data_summary.get("version"):
            log.warning("dataset %s changed since this run started (version %s, now %s): training goes on with its "
                        "current episodes", self.dataset, self.data_summary.get("version"), summary.get("version"))
        self.data_summary = summary
        log.info("offline data: %s", ", ".join(f"{k} {v}" for k, v in summary.items()))
        d3 = d3rlpy()
        observations = [self._policy_input(s.observations) for s in segments]
        buffer = d3.dataset.ReplayBuffer(d3.dataset.InfiniteBuffer(), episodes=[
            d3.dataset.Episode(observations=o, actions=np.asarray(s.actions, np.float32).reshape(len(s), -1),
                               rewards=np.asarray(s.rewards, np.float32).reshape(-1, 1), terminated=s.terminal)
            for o, s in zip(observations, segments, strict=True)])
        if self.d3rlpy_config is None:
            from d3rlpy.algos.utility import build_scalers_with_transition_picker

            build_scalers_with_transition_picker(self._algo, buffer)
            self.d3rlpy_config = self._algo.config.serialize()
        self._buffer = buffer

    # -- SB3 surface ---------------------------------------------------------------------------
    def learn(self, total_timesteps: int, callback: MaybeCallback = None, log_interval: int = 1, tb_log_name: str = "run",
              reset_num_timesteps: bool = True, progress_bar: bool = False):
        """``total_timesteps`` gradient steps on the dataset (see the module doc)."""
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if self._buffer is None:
            self._prepare_data()
        callback.on_training_start(locals(), globals())
        losses: dict[str, list[float]] = {}
        while self.num_timesteps < total_timesteps:
            batch = self._buffer.sample_transition_batch(self._algo.config.batch_size)
            for name, value in self._algo.update(batch).items():
                losses.setdefault(name, []).append(float(value))
            self.num_timesteps += 1
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            callback.update_locals(locals())
            if not callback.on_step():
                break
        for name, values in losses.items():
            self.logger.record(f"train/{name}", float(np.mean(values)))
        self.logger.record("train/n_updates", self._algo.grad_step)
        self.logger.dump(step=self.num_timesteps)
        callback.on_training_end()
        return self

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """Actions in the env's units for a batch of observations (or one); d3rlpy undoes the action scaling."""
        # images in the model's channel-first layout (an evaluation env hands over its own channel-last frames)
        observation = ({k: maybe_transpose(np.asarray(v), self.observation_space[k]) for k, v in observation.items()}
                       if isinstance(observation, dict) else maybe_transpose(np.asarray(observation), self.observation_space))
        vectorized = is_vectorized_observation(observation, self.observation_space)
        if not vectorized:
            observation = ({k: np.asarray(v)[None] for k, v in observation.items()} if isinstance(observation, dict)
                           else np.asarray(observation)[None])
        batch = self._policy_input(observation)
        with th.no_grad():
            if deterministic or self.config_class == "BCConfig":
                actions = self._algo.predict(batch)
            else:
                actions = self._algo.sample_action(batch)
        actions = np.clip(actions.reshape(len(batch), *self.action_space.shape), self.action_space.low,
                          self.action_space.high).astype(self.action_space.dtype)
        return (actions if vectorized else actions[0]), state


def _check_types(config_class: type, options: dict[str, Any]) -> None:
    """A UserError for a d3rlpy setting whose value is not of its field's kind (d3rlpy itself does not check: a
    string learning rate fails in the first gradient step)."""
    for field in dataclasses.fields(config_class):
        if field.name not in options or field.name in SCALERS or field.default is dataclasses.MISSING:
            continue
        value, default = options[field.name], field.default
        kinds = (bool,) if isinstance(default, bool) else (int,) if isinstance(default, int) else \
            (int, float) if isinstance(default, float) else (str,) if isinstance(default, str) else None
        if kinds is not None and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
            kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[type(default)]
            raise UserError(f"algorithm.{field.name}={value!r} is not allowed: {kind} (d3rlpy {config_class.__name__}; "
                            f"default {default!r}).")


class IQL(OfflineAgent):
    """Implicit Q-Learning (d3rlpy ``IQLConfig``)."""

    config_class = "IQLConfig"


class CQL(OfflineAgent):
    """Conservative Q-Learning (d3rlpy ``CQLConfig``)."""

    config_class = "CQLConfig"


class BC(OfflineAgent):
    """Behaviour cloning (d3rlpy ``BCConfig``)."""

    config_class = "BCConfig"
