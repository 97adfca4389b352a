"""Controllers: agents that act by a fixed rule and learn nothing (random, constant; later PID, human).

A controller is an SB3 ``BaseAlgorithm`` so that everything built for agents serves it unchanged:
the Trainer's epochs, evaluation, checkpoints (``model.save``/``cls.load``), resume, the MLflow
record, the save -> load -> predict round trip and ``experiment/evaluate.py``.

How a controller fits the SB3 surface:

- **Acting.** Subclasses implement :meth:`Controller._act` on a *batch* of observations (a
  ``np.ndarray`` or, for Dict spaces, a dict of arrays, first axis = env copies) and return a batch
  of actions plus the next ``state``. :meth:`Controller.predict` wraps it with SB3's conventions:
  one unbatched observation is accepted too, ``state``/``episode_start`` are passed through (so a
  PID controller keeps its integral and previous error in ``state`` and resets them where
  ``episode_start`` is true, exactly as a recurrent policy would), and Box actions are clipped to
  the bounds.
- **learn steps the env.** ``learn(total_timesteps)`` runs the controller in its training env for
  that many env steps (summed over env copies), counts them in ``num_timesteps``, calls the
  callbacks every step and records the episodes it saw (``rollout/ep_rew_mean``,
  ``rollout/ep_len_mean``, ``rollout/success_rate``, ``time/fps``). Nothing is trained. A no-op
  ``learn`` was the alternative; it would leave ``num_timesteps`` at 0, so every epoch of the
  Trainer would end at step 0 (metrics all logged at step 0, no progress bar, steps/s of 0) and
  ``trainer.eval_after_n_steps`` would mean nothing. Stepping makes an epoch of a controller cost
  what it says and its steps/s the env's throughput under that controller; the training episodes
  are more samples of the controller's behaviour.
- **Policy.** SB3 saves ``policy``'s state dict; a controller's :class:`ControllerPolicy` is an
  empty ``torch`` module (no parameters), registered under every policy alias (``MlpPolicy``,
  ``MultiInputPolicy``, ``CnnPolicy``), so ``policy: ${env.policy}`` in the configs always fits.
  The controller's settings (``action``, gains, ...) are plain attributes, which ``save`` pickles
  and ``load`` restores before calling :meth:`_setup_controller` again.
- **Seeds.** ``set_random_seed(seed)`` does what SB3's does (global RNGs, action space, env) and
  then :meth:`_seed_controller`; a controller's own random state (the random controller's
  sampler) is an attribute, so it is saved in ``model.zip`` and a resumed run continues the
  sequence where it stopped.

A controller acts on the observations its env gives: normalised where the env config sets
``normalize`` (the Fetch configs do), so a controller that reads observations (PID) wants
``env.normalize=null``.

Image observations reach ``_act`` in the model's layout: SB3 wraps an env with channel-last
images in ``VecTransposeImage``, so ``observation_space`` is channel-first and ``predict``
transposes channel-last frames (from an evaluation env) to it.

Controllers here: :class:`RandomController` (``conf/algorithm/random.yaml``) and
:class:`ConstantController` (``conf/algorithm/constant.yaml``); elsewhere
:class:`hydrarl.agents.pid.PIDController` and :class:`hydrarl.agents.human.HumanController` (CarRacing).
"""

from __future__ import annotations

import copy
import time
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import maybe_transpose
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import is_vectorized_observation, safe_mean

from hydrarl.errors import Incompatible, UserError

SelfController = TypeVar("SelfController", bound="Controller")

ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class ControllerMismatch(Incompatible):
    """A controller that cannot act in its env: spaces it was not made for, or (a human at the keyboard) a machine
    without a screen. A refusal of the pairing (``Incompatible``), which ``build_agent`` words with the pair's names.
    A bad setting of a controller is no refusal: a plain UserError naming ``algorithm.<key>`` and what is allowed."""


class ControllerPolicy(BasePolicy):
    """The policy slot of a controller: no parameters, no network. The controller itself acts
    (``Controller.predict``); this module exists so that SB3's save/load (which store the policy's
    state dict) work unchanged."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, *args, **kwargs):
        super().__init__(observation_space, action_space)

    def _predict(self, observation, deterministic: bool = False) -> th.Tensor:
        raise NotImplementedError("a controller acts through its own predict(); call model.predict, not model.policy.predict")


class Controller(BaseAlgorithm):
    """Base class of agents that act by a rule and learn nothing. Subclasses implement ``_act``
    (and ``_setup_controller`` / ``_seed_controller`` when they hold settings or random state).

    Constructor arguments of every controller: ``policy`` (any SB3 alias; kept for the config
    contract and ``load``), ``env``, ``seed``, ``device``, ``verbose``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ControllerPolicy,
        "MultiInputPolicy": ControllerPolicy,
        "CnnPolicy": ControllerPolicy,
    }

    def __init__(
        self,
        policy: str | type[BasePolicy] = "MlpPolicy",
        env: GymEnv | str | None = None,
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate=0.0,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
            supported_action_spaces=ACTION_SPACES,
        )
        self._last_state: Any = None
        if _init_setup_model:
            self._setup_model()
            self.set_random_seed(seed)

    # -- what subclasses provide -------------------------------------------------------------
    def _setup_controller(self) -> None:
        """Check the settings against the spaces and build what ``_act`` needs. Called on
        construction and again after ``load`` restored the saved attributes (keep what exists)."""

    def _seed_controller(self, seed: int) -> None:
        """Seed the controller's own random state (if any)."""

    def _act(self, observation: np.ndarray | dict[str, np.ndarray], state: Any, episode_start: np.ndarray,
             deterministic: bool) -> tuple[np.ndarray, Any]:
        """Actions for a batch of observations (first axis: env copies) and the next state."""
        raise NotImplementedError

    # -- SB3 surface ----------------------------------------------------------------------------
    def _setup_model(self) -> None:
        self.policy = ControllerPolicy(self.observation_space, self.action_space).to(self.device)
        self._setup_controller()

    def set_random_seed(self, seed: int | None = None) -> None:
        super().set_random_seed(seed)
        if seed is not None:
            self._seed_controller(seed)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``: a batch of observations (or one) -> actions in the action space, next state."""
        # SB3 wraps image envs in VecTransposeImage (channel-first) for the model, while evaluation envs
        # hand over the env's own channel-last frames: bring them to the model's layout, as SB3 policies do.
        if isinstance(observation, dict):
            observation = {k: maybe_transpose(np.asarray(v), self.observation_space[k]) for k, v in observation.items()}
        else:
            observation = maybe_transpose(np.asarray(observation), self.observation_space)
        vectorized = is_vectorized_observation(observation, self.observation_space)
        if not vectorized:
            observation = ({k: np.expand_dims(v, 0) for k, v in observation.items()} if isinstance(observation, dict)
                           else np.expand_dims(np.asarray(observation), 0))
        n = _batch_size(observation)
        starts = np.ones(n, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool).reshape(n)
        actions, state = self._act(observation, state, starts, deterministic)
        actions = np.asarray(actions).reshape((n, *self.action_space.shape))
        if isinstance(self.action_space, spaces.Box):
            actions = np.clip(actions, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)
        if not vectorized:
            actions = actions[0]
        return actions, state

    def learn(
        self: SelfController,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "run",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfController:
        """Act in the training env for ``total_timesteps`` env steps; nothing is trained (see module doc)."""
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        assert self.env is not None
        start, started_at = self.num_timesteps, time.perf_counter()
        callback.on_training_start(locals(), globals())
        callback.on_rollout_start()
        while self.num_timesteps < total_timesteps:
            actions, self._last_state = self.predict(self._last_obs, self._last_state, self._last_episode_starts)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += self.env.num_envs
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            callback.update_locals(locals())
            self._update_info_buffer(infos, dones)
            self._episode_num += int(np.sum(dones))
            self._last_obs, self._last_episode_starts = new_obs, dones
            if not callback.on_step():
                break
        callback.on_rollout_end()
        self._record_rollout(self.num_timesteps - start, time.perf_counter() - started_at)
        callback.on_training_end()
        return self

    def _record_rollout(self, steps: int, seconds: float) -> None:
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", safe_mean([info["r"] for info in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([info["l"] for info in self.ep_info_buffer]))
        if self.ep_success_buffer:
            self.logger.record("rollout/success_rate", safe_mean(self.ep_success_buffer))
        self.logger.record("time/episodes", self._episode_num)
        self.logger.record("time/fps", int(steps / max(seconds, 1e-9)))
        self.logger.dump(step=self.num_timesteps)


def _batch_size(observation: np.ndarray | dict[str, np.ndarray]) -> int:
    first = next(iter(observation.values())) if isinstance(observation, dict) else observation
    return int(np.shape(first)[0])


class RandomController(Controller):
    """Uniform random actions from the env's action space (``space.sample()``), also when
    ``deterministic=True`` (a uniform distribution has no mode; for a fixed action use
    :class:`ConstantController`). The sampler is seeded from ``seed`` (the run seed) and saved with
    the model, so a run, its resume and a loaded checkpoint continue one reproducible sequence."""

    def _setup_controller(self) -> None:
        if getattr(self, "_sampler", None) is None:  # a loaded model keeps its saved sampler state
            self._sampler = copy.deepcopy(self.action_space)
            self._sampler.seed(self.seed)

    def _seed_controller(self, seed: int) -> None:
        self._sampler.seed(seed)

    def _act(self, observation, state, episode_start, deterministic):
        return np.stack([self._sampler.sample() for _ in range(_batch_size(observation))]), state


class ConstantController(Controller):
    """The same action at every step: a "do nothing" baseline.

    ``action``: null = zeros for Box (0 must lie in the bounds), the first action for Discrete /
    MultiDiscrete (0 unless the space starts elsewhere), zeros for MultiBinary; or a value: a number
    (a Box action with that value in every dimension; the action of a Discrete space) or a list
    (the whole action). A value outside the action space is a UserError.
    """

    def __init__(
        self,
        policy: str | type[BasePolicy] = "MlpPolicy",
        env: GymEnv | str | None = None,
        action: float | int | list | None = None,
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        self.action = action
        super().__init__(policy, env, seed=seed, device=device, verbose=verbose, _init_setup_model=_init_setup_model)

    def _setup_controller(self) -> None:
        self._action = constant_action(self.action_space, self.action)

    def _act(self, observation, state, episode_start, deterministic):
        return np.repeat(self._action[None], _batch_size(observation), axis=0), state


def _hint(space: spaces.Space) -> str:
    if isinstance(space, spaces.Box):
        low, high = np.unique(space.low), np.unique(space.high)
        bounds = f"[{low[0]:g}, {high[0]:g}]" if len(low) == len(high) == 1 else "its bounds"
        return f"a number or a list of {int(np.prod(space.shape))} numbers in {bounds}"
    if isinstance(space, spaces.Discrete):
        return f"an integer from {int(space.start)} to {int(space.start + space.n - 1)}"
    return f"a list of integers of shape {space.shape} in the space"


def constant_action(space: spaces.Space, action: Any) -> np.ndarray:
    """The action ``action`` (see :class:`ConstantController`) as an array in ``space``; UserError otherwise."""
    if action is None:
        if isinstance(space, spaces.Box):
            value = np.zeros(space.shape, dtype=space.dtype)
        elif isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
            value = np.asarray(space.start, dtype=space.dtype)
        else:
            value = np.zeros(space.shape, dtype=space.dtype)
        if not space.contains(value):
            raise UserError(f"algorithm.action=null means {value.tolist()}, which is not in the env's action space {space}; "
                            f"give algorithm.action=<{_hint(space)}>.")
        return value
    bad = UserError(f"algorithm.action={action!r} is not in the env's action space {space}; give {_hint(space)}.")
    try:
        value = np.asarray(action)
    except (TypeError, ValueError) as exc:
        raise bad from exc
    if value.dtype.kind not in "iuf":  # numbers only (not strings, booleans, nested objects)
        raise bad
    if isinstance(space, spaces.Box):
        if value.ndim == 0:
            value = np.full(space.shape, value)
        value = value.astype(space.dtype)
    else:
        if value.dtype.kind == "f" and not np.all(value == np.round(value)):
            raise bad
        value = value.astype(space.dtype)
    if value.shape != space.shape or not space.contains(value):
        raise bad
    return value
