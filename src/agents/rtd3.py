"""Recurrent TD3 (RTD3) and recurrent DDPG (RDPG): a deterministic actor and ``n_critics`` critics, each reading
the observation history through its own LSTM/GRU summariser (:mod:`hydrarl.agents.recurrent_policy`), with target
copies of every summariser and head.

One gradient step of ``train()``, on a batch of B sequences (observations o_0..o_L, actions a_t in [-1, 1], rewards
r, d_t = 1 where the episode terminated (a time limit is not a termination), mask m_t = 1 on real steps; every summariser reads
the sequence ``policy.history``: o_t, or with ``action_input`` [o_t, a_{t-1}]):

1. target actor: a′ = clip(μ̄(h̄^μ_{t+1}) + clip(ε, −c, c), −1, 1), ε ~ N(0, σ²) (σ = ``target_policy_noise``,
   c = ``target_noise_clip``; RDPG: σ = 0);
2. target y_t = r_t + γ (1 − d_t) min_i Q̄_i(h̄^i_{t+1}, a′), from one pass of each target summariser (with
   ``td_steps`` n > 1 the n-step return of :func:`~hydrarl.agents.recurrent_off_policy.td_targets`);
3. critic loss Σ_i mean_m (Q_i(h^i_t, a_t) − y_t)², one Adam step per critic (summariser and head);
4. every ``policy_delay``-th step: actor loss −mean_m Q_1(sg(h^1_t), μ(h^μ_t)) through critic 1's detached
   summary (critic summarisers learn only from TD), one Adam step of the actor; then the Polyak update of all
   targets, θ̄ ← τ θ + (1 − τ) θ̄ (τ = 1 − polyak).

Exploration: ``action_noise`` added to μ during collection. RDPG is RTD3 with one critic, ``policy_delay`` 1 and no
target noise (as SB3's DDPG is its TD3). Logged: ``train/actor_loss``, ``train/critic_loss``, ``train/n_updates``.
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from hydrarl.agents.episode_buffer import EpisodeBatch
from hydrarl.agents.recurrent_off_policy import RecurrentOffPolicyAlgorithm, masked_mean, step_noise, td_targets
from hydrarl.agents.recurrent_policy import RecurrentActorCriticPolicy


class RTD3(RecurrentOffPolicyAlgorithm):
    """Recurrent TD3. Arguments as :class:`RecurrentOffPolicyAlgorithm`, plus:

    :param policy_delay: critic updates per actor (and target) update
    :param target_policy_noise: std σ of the target policy smoothing noise, in [-1, 1]-scaled action units
    :param target_noise_clip: the smoothing noise is clipped to ±this
    :param n_critics: critics; the target takes their minimum
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
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
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
        if policy_delay < 1:
            raise ValueError(f"policy_delay must be at least 1, got {policy_delay}")
        if target_policy_noise < 0 or target_noise_clip < 0:
            raise ValueError(f"target_policy_noise and target_noise_clip must be >= 0, got {target_policy_noise}, {target_noise_clip}")
        policy_kwargs = {**(policy_kwargs or {}), "actor": "deterministic", "n_critics": n_critics, "actor_target": True}
        super().__init__(policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq,
                         gradient_steps, action_noise, segment_len, policy_kwargs, td_steps, stats_window_size,
                         tensorboard_log, verbose, seed, device)
        self.policy_delay, self.n_critics = policy_delay, n_critics
        self.target_policy_noise, self.target_noise_clip = target_policy_noise, target_noise_clip
        if _init_setup_model:
            self._setup_model()

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        """One critic step on ``batch`` (and an actor and target step every ``policy_delay``-th); returns the losses."""
        policy = self.policy
        self._n_updates += 1
        obs, mask = batch.observations, batch.mask                              # (B, L+1, D), (B, L)

        seq = policy.history(obs, batch.actions)                                # (B, L+1, D [+ A])

        # 1-2. TD target from the target networks' summaries of the next steps
        with th.no_grad():
            next_actions = policy.actor_head_target(policy.actor_summariser_target(seq)[0][:, 1:])
            if self.target_policy_noise > 0:
                noise = step_noise(*mask.shape, next_actions.shape[-1:], self.device)  # padding changes none of it
                noise = (noise * self.target_policy_noise).clamp(-self.target_noise_clip, self.target_noise_clip)
                next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            next_q = th.stack([head(summariser(seq)[0][:, 1:], next_actions) for summariser, head
                               in zip(policy.critic_summarisers_target, policy.critic_heads_target, strict=True)])
            target_q = td_targets(batch.rewards, next_q.min(dim=0).values, batch.terminated, mask, self.gamma,
                                  self.td_steps)

        # 3. critics: masked TD loss, one Adam step each
        h_critics = [summariser(seq)[0] for summariser in policy.critic_summarisers]
        critic_loss = sum(masked_mean((head(h[:, :-1], batch.actions) - target_q) ** 2, mask)
                          for h, head in zip(h_critics, policy.critic_heads, strict=True))
        for optimizer in policy.critic_optimizers():
            optimizer.zero_grad()
        critic_loss.backward()
        for optimizer in policy.critic_optimizers():
            optimizer.step()
        losses = {"critic_loss": critic_loss.item()}

        # 4. delayed actor step through critic 1's detached summary, then the targets
        if self._n_updates % self.policy_delay == 0:
            actions_mu = policy.actor_head(policy.actor_summariser(seq[:, :-1])[0])
            actor_loss = -masked_mean(policy.critic_heads[0](h_critics[0][:, :-1].detach(), actions_mu), mask)
            policy.actor_optimizer.zero_grad()
            actor_loss.backward()
            policy.actor_optimizer.step()
            losses["actor_loss"] = actor_loss.item()
            self._polyak_update()
        return losses


class RDPG(RTD3):
    """Recurrent DDPG: :class:`RTD3` with one critic, an actor step after every critic step and no target noise."""

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
        td_steps: int = 1,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq,
                         gradient_steps, action_noise, segment_len, policy_delay=1, target_policy_noise=0.0,
                         target_noise_clip=0.0, n_critics=1, td_steps=td_steps, policy_kwargs=policy_kwargs,
                         stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, verbose=verbose,
                         seed=seed, device=device, _init_setup_model=_init_setup_model)
