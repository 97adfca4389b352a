"""Double DQN with prioritised experience replay (PER-DDQN), as an SB3 ``DQN`` subclass.

What changes against SB3's DQN is the replay buffer (:class:`PrioritizedReplayBuffer`) and
``train()``; exploration schedule, target-network updates (``target_update_interval``, ``tau``),
``learn``, ``predict``, saving and loading are DQN's.

One gradient step of ``train()``, for a batch (s, a, r, s′, done) with IS weights w:

1. β ← β0 + (1 − β0) · progress of the run (told to the buffer before sampling);
2. target y = r + γ · (1 − done) · Q_target(s′, argmax_a′ Q_online(s′, a′))   (double DQN);
3. δ = Q_online(s, a) − y;  loss = mean_i(w_i · ℓ(δ_i)), ℓ = Huber (``loss: huber``) or δ² (``mse``);
4. Adam step with the gradient norm clipped to ``max_grad_norm``;
5. the sampled transitions get priority (|δ| + ε)^α (nothing in ``recency`` mode).

Logged: ``train/loss``, ``train/n_updates``, ``train/mean_is_weight``, ``train/beta``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer

from hydrarl.agents.per_buffer import PRIORITIZATIONS, PrioritizedReplayBuffer, PrioritizedReplayBufferSamples

LOSSES = ("huber", "mse")


class PERDoubleDQN(DQN):
    """SB3 DQN with a double-DQN target and prioritised replay.

    Takes DQN's keyword arguments, plus:

    :param prioritization: ``proportional`` (TD-error priorities with IS weights) or ``recency``
        (sampling without replacement by recency rank, weights 1); see ``per_buffer``
    :param alpha: priority exponent α
    :param beta0: initial importance-sampling exponent, annealed linearly to 1 over the run
    :param priority_eps: ε in p = (|δ| + ε)^α
    :param loss: ``huber`` (SB3's smooth L1) or ``mse``

    ``replay_buffer_class`` defaults to (and must be a subclass of) ``PrioritizedReplayBuffer``;
    ``n_steps`` must be 1 (no n-step returns with prioritised replay here). ``optimize_memory_usage``
    works and needs ``replay_buffer_kwargs={"handle_timeout_termination": False}`` (as SB3's buffer does).
    """

    replay_buffer: PrioritizedReplayBuffer

    def __init__(
        self,
        policy: str | type,
        env: Any,
        learning_rate: float | Any = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        target_update_interval: int = 10000,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.05,
        max_grad_norm: float = 10,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        prioritization: str = "proportional",
        alpha: float = 0.6,
        beta0: float = 0.4,
        priority_eps: float = 1e-6,
        loss: str = "huber",
    ) -> None:
        if prioritization not in PRIORITIZATIONS:
            raise ValueError(f"prioritization must be one of {', '.join(PRIORITIZATIONS)}, got {prioritization!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if n_steps != 1:
            raise ValueError(f"n_steps={n_steps}: prioritised replay here uses 1-step targets; set n_steps=1")
        if replay_buffer_class is None:
            replay_buffer_class = PrioritizedReplayBuffer
        elif not issubclass(replay_buffer_class, PrioritizedReplayBuffer):
            raise ValueError(f"replay_buffer_class must be a PrioritizedReplayBuffer, got {replay_buffer_class.__name__}")
        if optimize_memory_usage and (replay_buffer_kwargs or {}).get("handle_timeout_termination", True):
            raise ValueError("optimize_memory_usage=true needs replay_buffer_kwargs.handle_timeout_termination=false "
                             "(truncated episodes then count as terminal), as in SB3's ReplayBuffer")
        replay_buffer_kwargs = {
            **(replay_buffer_kwargs or {}),
            "prioritization": prioritization, "alpha": alpha, "beta0": beta0, "priority_eps": priority_eps,
        }
        super().__init__(
            policy, env, learning_rate=learning_rate, buffer_size=buffer_size, learning_starts=learning_starts,
            batch_size=batch_size, tau=tau, gamma=gamma, train_freq=train_freq, gradient_steps=gradient_steps,
            replay_buffer_class=replay_buffer_class, replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage, n_steps=n_steps, target_update_interval=target_update_interval,
            exploration_fraction=exploration_fraction, exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps, max_grad_norm=max_grad_norm,
            stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs,
            verbose=verbose, seed=seed, device=device, _init_setup_model=False,
        )
        self.prioritization = prioritization
        self.alpha, self.beta0, self.priority_eps = alpha, beta0, priority_eps
        self.loss = loss
        if _init_setup_model:
            self._setup_model()

    # -- the double-DQN target ---------------------------------------------------------------
    @th.no_grad()
    def double_q_targets(self, data: PrioritizedReplayBufferSamples) -> th.Tensor:
        """y = r + γ (1 − done) Q_target(s′, argmax_a Q_online(s′, a)), shape (B, 1)."""
        next_actions = self.q_net(data.next_observations).argmax(dim=1, keepdim=True)
        next_q = th.gather(self.q_net_target(data.next_observations), dim=1, index=next_actions)
        return data.rewards + (1 - data.dones) * self.gamma * next_q

    def elementwise_loss(self, current_q: th.Tensor, target_q: th.Tensor) -> th.Tensor:
        """ℓ(δ) per sample, shape (B, 1)."""
        if self.loss == "huber":
            return F.smooth_l1_loss(current_q, target_q, reduction="none")
        return F.mse_loss(current_q, target_q, reduction="none")

    # -- one call of train: `gradient_steps` prioritised updates -------------------------------
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self.replay_buffer.set_progress(1.0 - self._current_progress_remaining)

        losses, mean_weights = [], []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            target_q = self.double_q_targets(data)
            current_q = th.gather(self.q_net(data.observations), dim=1, index=data.actions.long())
            loss = (data.weights * self.elementwise_loss(current_q, target_q)).mean()

            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()

            td_errors = (current_q - target_q).detach().abs().cpu().numpy().reshape(-1)
            self.replay_buffer.update_priorities(data.indices, td_errors)
            losses.append(loss.item())
            mean_weights.append(data.weights.mean().item())

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
        self.logger.record("train/mean_is_weight", float(np.mean(mean_weights)))
        self.logger.record("train/beta", self.replay_buffer.beta)
