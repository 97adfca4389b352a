"""Recurrent Soft Actor-Critic (RSAC): SAC whose actor and twin critics each read the observation history
through their own LSTM/GRU summariser (:mod:`hydrarl.agents.recurrent_policy`).

One gradient step of ``train()``, on a batch of B sequences (observations o_0..o_L, actions, rewards r, a flag
d_t = 1 where the episode terminated (not where a time limit cut it), mask m_t = 1 on real steps; every summariser reads
the sequence ``policy.history``: o_t, or with ``action_input`` [o_t, a_{t-1}]):

1. one pass of each summariser over o_0..o_L from a zero state: actor h^π, critics h^1, h^2, target critics h̄^1, h̄^2;
2. target y_t = r_t + γ (1 − d_t) V_{t+1}, V_{t+1} = min_i Q̄_i(h̄^i_{t+1}, a′) − α log π(a′|h^π_{t+1}), a′ ~ π(·|h^π_{t+1})
   (with ``td_steps`` n > 1 the n-step return of :func:`~hydrarl.agents.recurrent_off_policy.td_targets`);
3. critic loss Σ_i mean_m (Q_i(h^i_t, a_t) − y_t)², one Adam step per critic (summariser and head);
4. actor loss mean_m (α log π(ã|h^π_t) − min_i Q_i(sg(h^i_t), ã)), ã ~ π(·|h^π_t): the critics' summaries are
   detached (sg), so critic summarisers learn only from TD; one Adam step of the actor;
5. entropy coefficient: α = exp(log α), loss −mean_m(log α · (log π(ã|h^π_t) + target entropy)), target −|A|;
6. Polyak update of the target critics (summarisers and heads): θ̄ ← τ θ + (1 − τ) θ̄ (τ = 1 − polyak).

mean_m is the mean over valid steps (:func:`~hydrarl.agents.recurrent_off_policy.masked_mean`). Logged:
``train/actor_loss``, ``train/critic_loss``, ``train/ent_coef``, ``train/ent_coef_loss``, ``train/n_updates``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from hydrarl.agents.episode_buffer import EpisodeBatch
from hydrarl.agents.recurrent_off_policy import RecurrentOffPolicyAlgorithm, masked_mean, step_noise, td_targets
from hydrarl.agents.recurrent_policy import RecurrentActorCriticPolicy


class RSAC(RecurrentOffPolicyAlgorithm):
    """Recurrent SAC. Arguments as :class:`RecurrentOffPolicyAlgorithm`, plus:

    :param ent_coef: ``auto`` (learned, initial 1), ``auto_<init>`` (learned from ``init``) or a fixed float α
    :param target_entropy: ``auto`` (−|A|) or a float
    :param n_critics: twin critics by default
    :param td_steps: rewards in each TD target (n-step returns; 1: one-step TD)
    """

    def __init__(
        self,
        policy: str | type[RecurrentActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 10_000,
        batch_size: int = 10,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        segment_len: int | None = None,
        ent_coef: str | float = "auto",
        target_entropy: str | float = "auto",
        n_critics: int = 2,
        td_steps: int = 1,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        policy_kwargs = {**(policy_kwargs or {}), "actor": "gaussian", "n_critics": n_critics, "actor_target": False}
        super().__init__(policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq,
                         gradient_steps, action_noise, segment_len, policy_kwargs, td_steps, stats_window_size,
                         tensorboard_log, verbose, seed, device)
        self.ent_coef, self.target_entropy, self.n_critics = ent_coef, target_entropy, n_critics
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.target_entropy == "auto":
            self.target_entropy = -float(np.prod(self.action_space.shape))
        self.target_entropy = float(self.target_entropy)
        if isinstance(self.ent_coef, str) and self.ent_coef.startswith("auto"):
            init = float(self.ent_coef.split("_")[1]) if "_" in self.ent_coef else 1.0
            if init <= 0:
                raise ValueError(f"ent_coef={self.ent_coef}: the initial entropy coefficient must be positive")
            self.log_ent_coef = th.log(th.ones(1, device=self.device) * init).requires_grad_(True)
            self.ent_coef_optimizer = th.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1))
        else:
            self.log_ent_coef = th.log(th.tensor([float(self.ent_coef)], device=self.device))
            self.ent_coef_optimizer = None

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, _ = super()._get_torch_save_params()
        if self.ent_coef_optimizer is not None:
            state_dicts.append("ent_coef_optimizer")
        return state_dicts, ["log_ent_coef"]

    def _optimizers(self) -> list[th.optim.Optimizer]:
        return super()._optimizers() + ([self.ent_coef_optimizer] if self.ent_coef_optimizer is not None else [])

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        """One gradient step of every network on ``batch``; returns its losses and α."""
        policy = self.policy
        self._n_updates += 1
        obs, mask = batch.observations, batch.mask                              # (B, L+1, D), (B, L)
        # the policy's noise for the next and the current actions, drawn step by step (padding changes none of it)
        noise = step_noise(*mask.shape, (2, self.action_space.shape[0]), self.device).unbind(dim=2)

        # 1. summaries of the whole sequences, one pass per summariser
        seq = policy.history(obs, batch.actions)                                # (B, L+1, D [+ A])
        h_actor = policy.actor_summariser(seq)[0]                               # (B, L+1, H)
        h_critics = [summariser(seq)[0] for summariser in policy.critic_summarisers]
        alpha = self.log_ent_coef.detach().exp()

        # 2. TD target from the next steps' summaries; the target critics' summaries under no_grad
        with th.no_grad():
            next_actions, next_log_prob = policy.actor_head.sample(h_actor[:, 1:].detach(), noise[0])
            next_q = th.stack([head(summariser(seq)[0][:, 1:], next_actions) for summariser, head
                               in zip(policy.critic_summarisers_target, policy.critic_heads_target, strict=True)])
            next_values = next_q.min(dim=0).values - alpha * next_log_prob                # (B, L, 1)
            target_q = td_targets(batch.rewards, next_values, batch.terminated, mask, self.gamma, self.td_steps)

        # 3. critics: masked TD loss, one Adam step each
        critic_loss = sum(masked_mean((head(h[:, :-1], batch.actions) - target_q) ** 2, mask)
                          for h, head in zip(h_critics, policy.critic_heads, strict=True))
        for optimizer in policy.critic_optimizers():
            optimizer.zero_grad()
        critic_loss.backward()
        for optimizer in policy.critic_optimizers():
            optimizer.step()

        # 4. actor through the critics' detached summaries
        actions_pi, log_prob = policy.actor_head.sample(h_actor[:, :-1], noise[1])
        q_pi = th.stack([head(h[:, :-1].detach(), actions_pi)
                         for h, head in zip(h_critics, policy.critic_heads, strict=True)]).min(dim=0).values
        actor_loss = masked_mean(alpha * log_prob - q_pi, mask)
        policy.actor_optimizer.zero_grad()
        actor_loss.backward()
        policy.actor_optimizer.step()
        losses = {"actor_loss": actor_loss.item(), "critic_loss": critic_loss.item(), "ent_coef": alpha.item()}

        # 5. entropy coefficient
        if self.ent_coef_optimizer is not None:
            ent_coef_loss = -masked_mean(self.log_ent_coef * (log_prob.detach() + self.target_entropy), mask)
            self.ent_coef_optimizer.zero_grad()
            ent_coef_loss.backward()
            self.ent_coef_optimizer.step()
            losses["ent_coef_loss"] = ent_coef_loss.item()

        # 6. targets
        self._polyak_update()
        return losses
