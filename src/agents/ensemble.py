"""A policy ensemble (``algorithm=ensemble``): N trained policies acting together with the mean of their actions.

    python experiment/evaluate.py --controller 'Cassie/ensemble algorithm.members=[runs/a,runs/b,runs/c]'
    python experiment/plot_gait.py --controller 'Cassie/ensemble algorithm.members=[runs/a,runs/b]' render=record

Each member is a run directory (its ``checkpoints/<checkpoint>/model.zip``) or a ``model.zip`` inside one, loaded
with its own algorithm class and, where its run normalised observations, its own frozen statistics
(``vecnormalize.pkl``). The ensemble therefore takes the env's raw observations (``env_overrides`` turns the env's
normalisation off) and normalises them per member. Each member acts deterministically (or samples, with
``deterministic=False``) and the ensemble returns the mean of their Box actions. It learns nothing: a
:class:`~hydrarl.agents.controllers.Controller`, so evaluation, videos and ``plot_gait.py`` take it as they take any
controller. Members must have the env's observation and action spaces; recurrent members are not supported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv

from hydrarl.agents.controllers import Controller, ControllerMismatch
from hydrarl.agents.factory import algorithm_class
from hydrarl.config.runs import NORMALIZATION, find_model, read_normalization
from hydrarl.errors import UserError


class Member:
    """One policy of the ensemble: its model and its observation normalisation (None when its run had none)."""

    def __init__(self, path: str, checkpoint: str) -> None:
        run_dir, model_path, cfg = find_model(path, checkpoint)
        self.label = f"{cfg.env_name}/{cfg.algorithm_name}" + (f" seed {cfg.seed}" if cfg.get("seed") is not None else "")
        try:
            self.model: BaseAlgorithm = algorithm_class(cfg.algorithm, str(cfg.algorithm_name)).load(model_path, device="cpu")
        except Exception as exc:  # noqa: BLE001 - a model that does not load is the user's input
            raise UserError(f"ensemble member {path}: {model_path} cannot be loaded: {exc}") from exc
        self.normalizer = None
        statistics = model_path.parent / NORMALIZATION
        if statistics.is_file():
            try:
                self.normalizer = read_normalization(statistics)  # statistics and settings, without its env
            except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's input
                raise UserError(f"ensemble member {path}: {statistics} cannot be read: {exc}") from exc
            self.normalizer.training = False

    def act(self, observation: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions (n, action_dim) for raw observations (n, obs_dim)."""
        if self.normalizer is not None and self.normalizer.norm_obs:
            observation = self.normalizer.normalize_obs(observation)
        actions, _ = self.model.predict(observation, deterministic=deterministic)
        return np.asarray(actions, dtype=np.float64)


class PolicyEnsemble(Controller):
    """The mean action of ``members`` (paths of trained runs or their model.zip files).

    :param members: one or more run directories or ``model.zip`` files, all trained on this env's spaces
    :param checkpoint: which checkpoint of a run directory (``best``, ``last``, ``epoch_0005`` ...)
    """

    env_overrides = {"normalize": None}  # the members normalise with their own statistics

    def __init__(
        self,
        policy: str | type[BasePolicy] = "MlpPolicy",
        env: GymEnv | str | None = None,
        members: list[str] | None = None,
        checkpoint: str = "best",
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        if not members and _init_setup_model:  # the config tree's default (load() restores the saved members)
            raise ControllerMismatch("the ensemble acts with trained policies; name them: "
                                     "'algorithm.members=[runs/a,runs/b]' (run directories or model.zip files).")
        if not isinstance(members or [], list | tuple) or not all(isinstance(m, str) for m in members or []):
            raise UserError(f"algorithm.members={members!r} is not allowed: a list of one or more run directories or "
                            "model.zip files, e.g. 'algorithm.members=[runs/a,runs/b]'.")
        self.members, self.checkpoint = [str(m) for m in members or []], str(checkpoint)
        super().__init__(policy, env, seed=seed, device=device, verbose=verbose, _init_setup_model=_init_setup_model)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_loaded"]  # the members' models are loaded again from their paths

    def _setup_controller(self) -> None:
        if not isinstance(self.action_space, spaces.Box):
            raise ControllerMismatch(f"the ensemble averages Box actions; this env has {self.action_space}.")
        self._loaded = [Member(path, self.checkpoint) for path in self.members]
        for member, path in zip(self._loaded, self.members, strict=True):
            model = member.model
            if model.observation_space.shape != self.observation_space.shape or model.action_space != self.action_space:
                raise UserError(f"ensemble member {path} ({member.label}) takes observations of shape "
                                f"{model.observation_space.shape} and acts with shape {model.action_space.shape}; this env's "
                                f"are {self.observation_space.shape} and {self.action_space.shape} (in "
                                f"[{self.action_space.low.min():g}, {self.action_space.high.max():g}]).")

    def _act(self, observation: np.ndarray, state: Any, episode_start: np.ndarray, deterministic: bool):
        actions = [member.act(np.asarray(observation), deterministic) for member in self._loaded]
        return np.mean(actions, axis=0), state
