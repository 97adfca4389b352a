"""What RSAC, RTD3 and RDPG share: an SB3 off-policy algorithm whose policy has memory.

SB3's ``OffPolicyAlgorithm`` runs the loop (``learn``, ``collect_rollouts``, callbacks, ``num_timesteps``,
``learning_starts``, ``train_freq``/``gradient_steps``); this class changes three things:

- the replay buffer stores whole episodes (:class:`~hydrarl.agents.episode_buffer.EpisodeReplayBuffer`); an
  episode enters it when it ends, and ``batch_size`` counts sequences (episodes, or ``segment_len`` chunks);
- acting carries the actor summariser's hidden state from step to step of each env copy (``_rollout_state``),
  zeroed at episode starts, during collection as in :meth:`predict`; before ``learning_starts`` the actions are
  uniform random (the state still follows the observations);
- when the env is reset (the first ``learn``, or after a resume), the episodes in progress are dropped from the
  buffer: a stored episode is always whole.

Each subclass has its own ``update(batch)``: one gradient step, read top to bottom, over whole sequences in one
recurrent pass per network; ``train()`` here samples the batches and logs the losses. Losses are means over the valid (unpadded) steps: :func:`masked_mean`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from hydrarl.agents.episode_buffer import EpisodeBatch, EpisodeReplayBuffer
from hydrarl.agents.recurrent_policy import RecurrentActorCriticPolicy


def step_noise(batch_size: int, steps: int, shape: tuple[int, ...], device: th.device) -> th.Tensor:
    """Standard normal noise of shape (batch_size, steps, *shape), drawn one step at a time: the draws of the first
    t steps do not depend on how long the batch is (so padding a batch changes no real step's noise)."""
    return th.stack([th.randn(batch_size, *shape, device=device) for _ in range(steps)], dim=1)


def td_targets(rewards: th.Tensor, next_values: th.Tensor, terminated: th.Tensor, mask: th.Tensor, gamma: float,
               td_steps: int = 1) -> th.Tensor:
    """TD targets of every step of a padded batch of sequences, (B, L, 1):

        y_t = Σ_{k<m} γ^k r_{t+k} + γ^m (1 − d_{t+m−1}) V_{t+m},   m = min(td_steps, steps left in the sequence from t)

    ``rewards`` r, ``terminated`` d (1 at the last step of a terminated episode) and ``mask`` (1 on real steps) are
    (B, L) or (B, L, 1); ``next_values`` V_{t+1} (the target networks' value of the step after t) the same. A
    sequence's last real step bootstraps from its next observation unless the episode terminated there (a time
    limit or a segment's end bootstraps), and no sum reaches past it; with ``td_steps`` = 1 this is
    y_t = r_t + γ (1 − d_t) V_{t+1}. Values on padded steps are meaningless (the losses mask them)."""
    batch, length = mask.shape[:2]
    r, d, v, m = (F.pad(x.reshape(batch, length), (0, td_steps)) for x in (rewards, terminated, next_values, mask))
    target, discount = th.zeros_like(r[:, :length]), 1.0
    for k in range(td_steps):
        real = m[:, k:k + length]
        last = real if k == td_steps - 1 else real * (1.0 - m[:, k + 1:k + 1 + length])  # step t+k ends the sum
        target = target + discount * (real * r[:, k:k + length] + gamma * last * (1.0 - d[:, k:k + length]) * v[:, k:k + length])
        discount *= gamma
    return target.unsqueeze(-1)


def masked_mean(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Mean of ``values`` (B, L, 1) or (B, L) over the steps where ``mask`` (B, L) is 1; padding adds nothing."""
    values = values.reshape(mask.shape)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class RecurrentOffPolicyAlgorithm(OffPolicyAlgorithm):
    """Base of the recurrent off-policy agents. Box observations (flat vectors) and Box actions.

    :param buffer_size: replay capacity in stored transitions (each episode takes its length + 1 rows)
    :param learning_starts: env steps of uniform random actions before the first update ("update_after")
    :param batch_size: sequences per update (whole episodes, or ``segment_len`` chunks of them)
    :param segment_len: None trains on whole episodes; k trains on chunks of at most k steps (from a zero state)
    :param td_steps: rewards summed in each TD target before it bootstraps (n-step returns, :func:`td_targets`);
        1 is one-step TD. The sums use the stored episodes' rewards as they were, with no off-policy correction
    :param policy_kwargs: :class:`RecurrentActorCriticPolicy` arguments (``cell``, ``hidden_size``, ``n_layers``,
        ``net_arch``, ...); ``actor``, ``n_critics`` and ``actor_target`` are set by the algorithm
    """

    policy_aliases: ClassVar[dict[str, type]] = {"MlpPolicy": RecurrentActorCriticPolicy}
    policy: RecurrentActorCriticPolicy
    replay_buffer: EpisodeReplayBuffer

    def __init__(
        self,
        policy: str | type[RecurrentActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule,
        buffer_size: int,
        learning_starts: int,
        batch_size: int,
        tau: float,
        gamma: float,
        train_freq: int | tuple[int, str],
        gradient_steps: int,
        action_noise: ActionNoise | None,
        segment_len: int | None,
        policy_kwargs: dict[str, Any],
        td_steps: int = 1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (sequences per update), got {batch_size}")
        if isinstance(td_steps, bool) or not isinstance(td_steps, int) or td_steps < 1:
            raise ValueError(f"td_steps must be a positive integer (rewards per TD target), got {td_steps!r}")
        self.segment_len, self.td_steps = segment_len, td_steps
        super().__init__(
            policy, env, learning_rate, buffer_size=buffer_size, learning_starts=learning_starts,
            batch_size=batch_size, tau=tau, gamma=gamma, train_freq=train_freq, gradient_steps=gradient_steps,
            action_noise=action_noise, replay_buffer_class=EpisodeReplayBuffer,
            replay_buffer_kwargs={"segment_len": segment_len}, policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, verbose=verbose, device=device,
            seed=seed, support_multi_env=True, sde_support=False, supported_action_spaces=(spaces.Box,),
        )
        self._rollout_state: tuple[np.ndarray, ...] | None = None

    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False):
        if reset_num_timesteps or self._last_obs is None:  # SB3 resets the env: the episodes in progress end here
            self.replay_buffer.drop_pending()
            self._rollout_state = None
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def _sample_action(self, learning_starts: int, action_noise: ActionNoise | None = None,
                       n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The exploration action of each env copy, and the [-1, 1]-scaled one the buffer stores. The actor's
        state follows every step (also in the random warm-up, so that acting starts with the episode's memory)."""
        assert self._last_obs is not None, "self._last_obs was not set"
        actions, self._rollout_state = self.policy.predict(self._last_obs, self._rollout_state,
                                                           self._last_episode_starts, deterministic=False)
        if self.num_timesteps < learning_starts:
            actions = np.array([self.action_space.sample() for _ in range(n_envs)])
        scaled = self.policy.scale_action(actions)
        if action_noise is not None:
            scaled = np.clip(scaled + action_noise(), -1, 1)
        self._rollout_state = self.policy.remember_action(self._rollout_state, scaled)
        return self.policy.unscale_action(scaled), scaled

    def _store_transition(self, replay_buffer, buffer_action, new_obs, reward, dones, infos) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._last_episode_starts = np.asarray(dones, dtype=bool).copy()

    def train(self, gradient_steps: int, batch_size: int = 10) -> None:
        """``gradient_steps`` updates (:meth:`update`), each on ``batch_size`` sampled sequences; logs the mean of each
        loss as ``train/<name>``. Nothing before the first episode has ended."""
        if self.replay_buffer.n_episodes == 0:
            return
        self.policy.set_training_mode(True)
        self._update_learning_rate(self._optimizers())
        losses = [self.update(self.replay_buffer.sample(batch_size, env=self._vec_normalize_env))
                  for _ in range(gradient_steps)]
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for name in dict.fromkeys(key for loss in losses for key in loss):
            self.logger.record(f"train/{name}", float(np.mean([loss[name] for loss in losses if name in loss])))

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        """One gradient step on ``batch`` (counted in ``_n_updates``); returns its losses by name."""
        raise NotImplementedError

    def _optimizers(self) -> list[th.optim.Optimizer]:
        """The optimisers whose learning rate follows ``learning_rate``."""
        return [self.policy.actor_optimizer, *self.policy.critic_optimizers()]

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_rollout_state"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", *(f"policy.{name}" for name in self.policy.optimizer_names())], []

    def _polyak_update(self) -> None:
        """target ← τ·online + (1 − τ)·target for every target network (τ = 1 − polyak)."""
        with th.no_grad():
            for online, target in self.policy.online_target_pairs():
                for param, target_param in zip(online.parameters(), target.parameters(), strict=True):
                    target_param.mul_(1.0 - self.tau).add_(param, alpha=self.tau)
