"""Hierarchical Actor-Critic (HAC, Levy et al. 2019): a stack of off-policy agents on a goal-conditioned env.

Layers are listed top down (``layer_classes``, ``time_scales``, ``learning_rates``). Every layer reads the env's
goal-dict observation with its own goal in ``desired_goal``: the top layer's goal is the env's; a layer above the
bottom acts by choosing a subgoal (a point of the goal space) which the layer below then pursues for at most its
time scale H of actions; the bottom layer's actions drive the env. One env episode is not reset between layers.

Collection (one env step at a time, so that ``num_timesteps`` counts env steps and SB3 callbacks fire per env
step, as the Trainer's epochs, checkpoints and pruning expect) follows the method:

- **hindsight actions**: a layer's stored action is the subgoal actually achieved when its subgoal was missed
  (``use_action_replay``);
- **hindsight goals**: each transition is also stored with ``n_sampled_goal`` goals achieved later in the same
  layer episode (``goal_selection_strategy``: future, final, episode); reward: the env's ``compute_reward``;
- **subgoal testing**: with probability ``subgoal_test_perc`` before a subgoal is chosen, every layer below acts
  without exploration; a tested subgoal that is missed adds a penalty transition with reward −H **whose target
  is not bootstrapped** (stored as terminal: its critic target is exactly −H);
- a transition that reaches its goal is terminal; a layer's episode ends at H actions, at the env's end, or, with
  ``ep_early_done_on_succ``, when its goal is reached;
- after each layer episode that layer trains for as many gradient steps as actions it took (``gradient_steps``
  −1), once its buffer holds more than ``learning_starts`` rows.

Evaluation runs the hierarchy as trained: :meth:`HAC.predict` keeps each layer's subgoal and its count of
actions in the ``state`` it returns (sb3-contrib's RecurrentPPO contract), so a subgoal is held for up to H env
steps; without a state (or at ``episode_start``) every layer chooses anew.

Goals are compared in the env's own units, so HAC needs observations that are not normalised
(``env_overrides``: the run's env is built with ``normalize: null``).
"""

from __future__ import annotations

import copy
from collections.abc import Generator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.vec_env import VecEnv

from hydrarl.agents.hac_layers import (
    STOCHASTIC,
    STRATEGIES,
    GoalNormalizer,
    LayerBuffers,
    Obs,
    Transition,
    add,
    build_layer,
    check_env,
    draw_subgoals,
    estimate_goal_bounds,
    resolve_time_scales,
    store_episode,
    with_goal,
)
from hydrarl.errors import UserError

BOUND_SAMPLES = 50  # env resets whose goals estimate the subgoal bounds of an unbounded goal space


class LayerList(list):
    """The layers, reachable as ``layers.0`` by SB3's dotted parameter names (save/load)."""

    def __getattr__(self, name: str) -> OffPolicyAlgorithm:
        if name.isdigit():
            return self[int(name)]
        raise AttributeError(name)


class HAC(BaseAlgorithm):
    """HAC over SB3 off-policy layers. One env copy with goal-dict observations and Box actions.

    :param layer_classes: one agent per layer, top down: ``sac``, ``td3``, ``ddpg`` or ``tqc``
    :param time_scales: per layer, top down, the most actions it takes toward one goal; one entry may be -1:
        the env's episode length divided by the product of the others
    :param learning_rates: per layer, top down
    :param buffer_size: replay capacity per layer, in transitions (hindsight copies included)
    :param learning_starts: rows a layer's buffer holds before it trains and before it acts by its policy
        (until then its actions are uniform random)
    :param batch_size: transitions per gradient step
    :param gradient_steps: per layer episode; -1: as many as the actions the layer took
    :param n_sampled_goal: hindsight goals stored per transition
    :param goal_selection_strategy: future | final | episode
    :param use_action_replay: store the achieved subgoal as the action of a missed one
    :param subgoal_test_perc: probability of testing a subgoal (the layers below act without noise)
    :param ep_early_done_on_succ: end a layer's episode when its goal is reached
    :param action_noise_std: Gaussian exploration noise of TD3/DDPG layers, times half the action range
    :param subgoal_bounds: ``[low, high]`` of subgoals (lists of goal_dim numbers); None: the goal space's bounds,
        or, when unbounded, the range of ``BOUND_SAMPLES`` reset goals widened by 10 %
    :param layer_kwargs: further constructor arguments of every layer's agent (``policy_kwargs``, ``ent_coef``, ...)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MultiInputPolicy": BasePolicy}
    env_overrides: ClassVar[dict[str, Any]] = {"normalize": None}  # goals in the env's units (see the module doc)

    def __init__(
        self,
        policy: str,
        env: VecEnv,
        layer_classes: Sequence[str] = ("sac", "sac"),
        time_scales: Sequence[int] = (-1, 7),
        learning_rates: Sequence[float] = (0.0018, 0.003),
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        gamma: float = 0.95,
        tau: float = 0.005,
        gradient_steps: int = -1,
        n_sampled_goal: int = 6,
        goal_selection_strategy: str = "future",
        use_action_replay: bool = True,
        subgoal_test_perc: float = 0.1,
        ep_early_done_on_succ: bool = True,
        action_noise_std: float = 0.1,
        subgoal_bounds: Sequence[Sequence[float]] | None = None,
        layer_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ):
        if env is not None and _init_setup_model:
            check_env(env)
        super().__init__(policy, env, learning_rate=float(learning_rates[-1]), seed=seed, device=device,
                         verbose=verbose, support_multi_env=False, supported_action_spaces=(spaces.Box,))
        self.layer_classes = [str(name) for name in layer_classes]
        self.learning_rates = [float(lr) for lr in learning_rates]
        if len(self.learning_rates) != len(self.layer_classes):
            raise UserError(f"algorithm.learning_rates={self.learning_rates} has {len(self.learning_rates)} entries for "
                            f"{len(self.layer_classes)} layer(s): give one learning rate per layer, top down.")
        if goal_selection_strategy not in STRATEGIES:
            raise UserError(f"algorithm.goal_selection_strategy={goal_selection_strategy!r} is not allowed: "
                            f"choose {', '.join(STRATEGIES)}.")
        self.buffer_size, self.learning_starts, self.batch_size = buffer_size, learning_starts, batch_size
        self.gamma, self.tau, self.gradient_steps = gamma, tau, gradient_steps
        self.n_sampled_goal, self.goal_selection_strategy = n_sampled_goal, goal_selection_strategy
        self.use_action_replay, self.subgoal_test_perc = use_action_replay, subgoal_test_perc
        self.ep_early_done_on_succ, self.action_noise_std = ep_early_done_on_succ, action_noise_std
        self.layer_kwargs = dict(layer_kwargs or {})
        self.subgoal_bounds = None if subgoal_bounds is None else [list(map(float, b)) for b in subgoal_bounds]
        self.time_scales = list(time_scales)
        self.rng = np.random.default_rng(seed)
        self._episode: Generator[None, None, Any] | None = None  # the env episode in progress (see learn)
        if _init_setup_model:
            spec = self.env.get_attr("spec")[0] if self.env is not None else None
            episode_steps = spec.max_episode_steps if spec is not None else None
            self.time_scales = resolve_time_scales(self.time_scales, len(self.layer_classes), episode_steps)
            self._setup_model()

    # -- layers ----------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        """Build the layers (also after a load, from the saved settings, before their weights are set)."""
        goal_space = self.observation_space["desired_goal"]
        if self.subgoal_bounds is None:
            if np.all(np.isfinite(goal_space.low)) and np.all(np.isfinite(goal_space.high)):
                self.subgoal_bounds = [goal_space.low.tolist(), goal_space.high.tolist()]
            else:
                self.subgoal_bounds = estimate_goal_bounds(self._reset_goals())
        low, high = (np.asarray(b, dtype=np.float32) for b in self.subgoal_bounds)
        if low.shape != goal_space.shape or high.shape != goal_space.shape or not np.all(low < high):
            raise UserError(f"algorithm.subgoal_bounds={self.subgoal_bounds} is not allowed: [low, high], each "
                            f"{goal_space.shape[0]} numbers (the goal's size), low below high in every coordinate.")
        subgoal_space = spaces.Box(low, high, dtype=np.float32)
        n = len(self.layer_classes)
        self.layers = LayerList(
            build_layer(name, self.observation_space, self.action_space if level == n - 1 else subgoal_space,
                        self.learning_rates[level], self.device, buffer_size=self.buffer_size,
                        batch_size=self.batch_size, gamma=self.gamma, tau=self.tau, **copy.deepcopy(self.layer_kwargs))
            for level, name in enumerate(self.layer_classes))
        if getattr(self, "normalizer", None) is None:
            self.normalizer = GoalNormalizer(self.observation_space["observation"].shape[0], goal_space.shape[0])
        for layer, updates in zip(self.layers, getattr(self, "layer_updates", [0] * n), strict=True):
            layer._vec_normalize_env = self.normalizer  # its buffer normalises each sampled batch (SB3's hook)
            layer._n_updates = updates  # saved with HAC (a layer's own attributes are not)
        self.policy = th.nn.ModuleList([layer.policy for layer in self.layers])
        self.stats = np.zeros((n, 3))  # per layer since the last log: subgoals chosen, reached, tested

    def _reset_goals(self) -> np.ndarray:
        """Desired and achieved goals of ``BOUND_SAMPLES`` seeded resets of the env (before training starts)."""
        seed = 0 if self.seed is None else self.seed
        goals = []
        for k in range(BOUND_SAMPLES):
            obs, _ = self.env.env_method("reset", seed=seed + k, indices=[0])[0]
            goals += [obs["desired_goal"], obs["achieved_goal"]]
        return np.stack(goals)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = [], []
        for level, layer in enumerate(self.layers):
            names, tensors = layer._get_torch_save_params()
            state_dicts += [f"layers.{level}.{name}" for name in names]
            variables += [f"layers.{level}.{name}" for name in tensors]
        return state_dicts, variables

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "layers", "_episode", "stats", "shown_subgoals"]

    @property
    def replay_buffer(self) -> LayerBuffers:
        """The layers' buffers, as one object a checkpoint saves and a resume puts back."""
        return LayerBuffers([layer.replay_buffer for layer in self.layers])

    @replay_buffer.setter
    def replay_buffer(self, buffers: LayerBuffers) -> None:
        for layer, buffer in zip(self.layers, buffers.buffers, strict=True):
            buffer.device = self.device
            layer.replay_buffer = buffer

    # -- goals -------------------------------------------------------------------------------------
    def _reward(self, achieved: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The env's ``compute_reward`` for achieved goals and goals (n, goal_dim) -> (n,)."""
        if self.env is None:
            raise UserError("HAC needs its env to test goals: load the model with env=... (the run's env).")
        return np.asarray(self.env.env_method("compute_reward", achieved, goal, {}, indices=[0])[0], dtype=np.float32)

    def _reached(self, achieved: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Whether each goal counts as reached: its reward is as high as that of achieving the goal exactly."""
        achieved, goal = np.atleast_2d(achieved), np.atleast_2d(goal)
        return self._reward(achieved, goal) >= self._reward(goal, goal)

    # -- acting --------------------------------------------------------------------------------------
    def _act(self, level: int, obs: Obs, explore: bool) -> np.ndarray:
        """One action of a layer for one env copy: uniform random until its buffer holds ``learning_starts`` rows,
        then its policy (sampled, or with Gaussian noise for TD3/DDPG) when exploring, else deterministic."""
        layer = self.layers[level]
        space = layer.action_space
        if explore and layer.replay_buffer.size() < self.learning_starts:
            return self.rng.uniform(space.low, space.high).astype(np.float32)
        action, _ = layer.predict(self.normalizer.normalize_obs({k: v[None] for k, v in obs.items()}),
                                  deterministic=not explore)
        action = action[0]
        if explore and not isinstance(layer, STOCHASTIC):
            action = action + self.rng.normal(0.0, self.action_noise_std * (space.high - space.low) / 2)
        return np.clip(action, space.low, space.high).astype(np.float32)

    # -- collection ----------------------------------------------------------------------------------
    def learn(self, total_timesteps: int, callback: MaybeCallback = None, log_interval: int = 4,
              tb_log_name: str = "HAC", reset_num_timesteps: bool = True, progress_bar: bool = False) -> HAC:
        """Collect and train for ``total_timesteps`` env steps; an episode in progress when ``learn`` returns
        continues at the next call (not after a load: the resumed env starts a new episode)."""
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name,
                                                      progress_bar)
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total_timesteps:
            if self._episode is None:
                self._episode = self._run_episode()
            try:
                next(self._episode)
            except StopIteration:
                self._episode = None
                continue
            self.num_timesteps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                break
        self._log_stats()
        callback.on_training_end()
        return self

    def _run_episode(self) -> Generator[None, None, None]:
        """One env episode: top-layer episodes toward the env's goal until the env ends it. Yields after each env step."""
        obs = {k: v[0] for k, v in self._last_obs.items()}
        self.normalizer.update(obs)
        done = False
        while not done:
            obs, done, _ = yield from self._layer_episode(0, obs["desired_goal"], obs, testing=False)

    def _layer_episode(self, level: int, goal: np.ndarray, obs: Obs,
                       testing: bool) -> Generator[None, None, tuple[Obs, bool, bool]]:
        """Layer ``level`` pursues ``goal`` for up to its time scale of actions (``testing``: without exploration);
        stores the episode and trains the layer. Returns (observation, env episode over, env terminated)."""
        horizon, bottom = self.time_scales[level], level == len(self.layers) - 1
        episode: list[Transition] = []
        done = terminated = False
        for _ in range(horizon):
            action = self._act(level, with_goal(obs, goal), explore=not testing)
            if bottom:
                next_obs, done, terminated = self._env_step(action)
                yield
                stored = action
            else:
                test = testing or self.rng.random() < self.subgoal_test_perc
                next_obs, done, terminated = yield from self._layer_episode(level + 1, action, obs, test)
                reached = bool(self._reached(next_obs["achieved_goal"], action)[0])
                self.stats[level] += (1, reached, test)
                if test and not reached:  # penalty: reward -H, no bootstrap
                    add(self.layers[level], with_goal(obs, goal), action, -float(horizon), with_goal(next_obs, goal), True)
                missed_replay = self.use_action_replay and not reached
                space = self.layers[level].action_space
                stored = np.clip(next_obs["achieved_goal"], space.low, space.high) if missed_replay else action
            episode.append(Transition(obs, np.asarray(stored, dtype=np.float32), next_obs, terminated))
            obs = next_obs
            if done or (self.ep_early_done_on_succ and self._reached(obs["achieved_goal"], goal)[0]):
                break
        self._finish_layer_episode(level, episode, goal)
        return obs, done, terminated

    def _env_step(self, action: np.ndarray) -> tuple[Obs, bool, bool]:
        """One env step: (the step's own next observation, episode over, terminated by the env)."""
        new_obs, _, dones, infos = self.env.step(action[None])
        self._update_info_buffer(infos, dones)
        self._last_obs = new_obs
        done = bool(dones[0])
        self.normalizer.update({k: v[0] for k, v in new_obs.items()})
        if done:
            self._episode_num += 1
            return infos[0]["terminal_observation"], True, not infos[0].get("TimeLimit.truncated", False)
        return {k: v[0] for k, v in new_obs.items()}, False, False

    def _finish_layer_episode(self, level: int, episode: list[Transition], goal: np.ndarray) -> None:
        layer = self.layers[level]
        store_episode(layer, episode, goal, self.n_sampled_goal, self.goal_selection_strategy, self._reward,
                      self._reached, self.rng)
        if layer.replay_buffer.size() <= self.learning_starts:
            return
        layer.train(gradient_steps=len(episode) if self.gradient_steps == -1 else self.gradient_steps,
                    batch_size=self.batch_size)
        for key, value in layer.logger.name_to_value.items():
            self.logger.record(key.replace("train/", f"train/layer{level}_", 1), value)

    def _log_stats(self) -> None:
        """Per layer above the bottom: the share of its subgoals reached and tested since the last log."""
        for level, (chosen, reached, tested) in enumerate(self.stats[:-1]):
            if chosen:
                self.logger.record(f"rollout/layer{level}_subgoal_success", reached / chosen)
                self.logger.record(f"rollout/layer{level}_subgoal_tests", tested / chosen)
        self.stats[:] = 0
        self.layer_updates = [layer._n_updates for layer in self.layers]
        if self.ep_success_buffer:
            self.logger.record("rollout/success_rate", float(np.mean(self.ep_success_buffer)))
        self.logger.dump(self.num_timesteps)

    # -- evaluation --------------------------------------------------------------------------------
    def predict(self, observation: dict[str, np.ndarray], state: tuple[np.ndarray, ...] | None = None,
                episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Actions for a batch of goal-dict observations (one row per env copy), running the hierarchy.

        ``state`` = (subgoals (n_layers - 1, n_envs, goal_dim), counts (n_layers, n_envs)): each upper layer's
        current subgoal and each layer's actions toward its current goal. Pass it back with ``episode_start``
        (True where a new episode began) at the next step; without it every layer chooses anew.
        """
        n_envs, n = len(observation["desired_goal"]), len(self.layers)
        if state is None:
            state = (np.zeros((n - 1, n_envs, observation["desired_goal"].shape[-1]), dtype=np.float32),
                     np.zeros((n, n_envs), dtype=np.int64))
            episode_start = np.ones(n_envs, dtype=bool)
        subgoals, counts = (np.array(s) for s in state)
        starts = np.ones(n_envs, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool)
        actions = []
        for e in range(n_envs):
            obs = {k: np.asarray(v[e]) for k, v in observation.items()}
            if starts[e]:
                level, counts[:, e] = 0, 0
            else:
                level = self._acting_level(obs, subgoals[:, e], counts[:, e])
                if level == 0 and self._goal_done(0, obs, obs["desired_goal"], counts[0, e]):
                    counts[0, e] = 0  # a new top-layer episode toward the env's goal, as in training
            counts[level + 1:, e] = 0
            goal = obs["desired_goal"] if level == 0 else subgoals[level - 1, e]
            for upper in range(level, n - 1):
                subgoals[upper, e] = self._act(upper, with_goal(obs, goal), explore=not deterministic)
                counts[upper, e] += 1
                goal = subgoals[upper, e]
            actions.append(self._act(n - 1, with_goal(obs, goal), explore=not deterministic))
            counts[n - 1, e] += 1
        self.shown_subgoals = subgoals.copy()
        return np.stack(actions), (subgoals, counts)

    def add_markers(self, env: VecEnv) -> None:
        """Draw the subgoals of the last :meth:`predict` (env copy 0) into ``env``'s next rendered frame
        (:func:`~hydrarl.agents.hac_layers.draw_subgoals`). Video recording calls it before every frame."""
        subgoals = getattr(self, "shown_subgoals", None)
        if subgoals is not None:
            draw_subgoals(env.get_attr("unwrapped")[0], subgoals[:, 0])

    def _goal_done(self, level: int, obs: Obs, goal: np.ndarray, count: int) -> bool:
        """Whether layer ``level``'s pursuit of ``goal`` is over: H actions taken, or (early done) the goal reached."""
        return count >= self.time_scales[level] or (self.ep_early_done_on_succ and bool(self._reached(obs["achieved_goal"], goal)[0]))

    def _acting_level(self, obs: Obs, subgoals: np.ndarray, counts: np.ndarray) -> int:
        """The highest layer that must act now: the bottom, unless its goal is done, then the layer above, and so on."""
        level = len(self.layers) - 1
        while level > 0 and self._goal_done(level, obs, subgoals[level - 1], counts[level]):
            level -= 1
        return level
