"""Networks of the recurrent off-policy agents (RSAC, RTD3, RDPG): summarisers, heads, and the policy.

A *summariser* is an LSTM or GRU over the observation sequence: (B, T, obs_dim) -> (B, T, hidden); with
``action_input`` it reads the previous action too, [o_t, a_{t-1}] (a_{-1} = 0): (B, T, obs_dim + action_dim). The
actor and each critic have their own summariser, head and Adam optimiser, so that a critic's summariser
learns only from its TD loss (the actor's loss reads the critics through *detached* summaries):

    actor:     obs_{0..t} -> actor summariser -> h^π_t -> head -> action (tanh, in [-1, 1])
    critic i:  obs_{0..t} -> critic summariser i -> h^i_t ; (h^i_t, a_t) -> head -> Q_i

Targets: copies of the critics (summarisers and heads) always; of the actor too when ``actor_target``
(RDPG, RTD3; not RSAC, whose next action comes from the current actor).

:meth:`RecurrentActorCriticPolicy.predict` follows sb3-contrib's RecurrentPPO contract: it takes and returns
``state`` (the actor summariser's hidden state, a tuple of arrays of shape (n_layers, n_envs, hidden): (h, c) for
an LSTM, (h,) for a GRU; with ``action_input`` followed by the last action, [-1, 1]-scaled, of shape
(1, n_envs, action_dim)) and zeroes it where ``episode_start`` is true, so one call per env step carries the
memory across steps of an episode and resets it between episodes, per env copy.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
ACTORS = ("gaussian", "deterministic")
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
Hidden = tuple[th.Tensor, ...]  # (h, c) for an LSTM, (h,) for a GRU; each (n_layers, batch, hidden)


class Summariser(nn.Module):
    """An LSTM or GRU over observation sequences (batch first), from a given or zero initial state."""

    def __init__(self, obs_dim: int, cell: str = "lstm", hidden_size: int = 256, n_layers: int = 2):
        super().__init__()
        self.cell, self.hidden_size, self.n_layers = cell, hidden_size, n_layers
        self.rnn = CELLS[cell](obs_dim, hidden_size, n_layers, batch_first=True)

    def initial_state(self, batch: int, device: th.device) -> Hidden:
        zeros = th.zeros(self.n_layers, batch, self.hidden_size, device=device)
        return (zeros, zeros.clone()) if self.cell == "lstm" else (zeros,)

    def forward(self, obs: th.Tensor, state: Hidden | None = None) -> tuple[th.Tensor, Hidden]:
        """``obs`` (B, T, obs_dim) -> summaries (B, T, hidden) and the state after step T."""
        if state is None:
            out, last = self.rnn(obs)
        else:
            out, last = self.rnn(obs, state if self.cell == "lstm" else state[0])
        return out, (last if self.cell == "lstm" else (last,))


class QHead(nn.Module):
    """Q(h_t, a_t): an MLP over the summary concatenated with the [-1, 1]-scaled action -> (..., 1)."""

    def __init__(self, hidden_size: int, action_dim: int, net_arch: list[int], activation_fn: type[nn.Module]):
        super().__init__()
        self.net = nn.Sequential(*create_mlp(hidden_size + action_dim, 1, net_arch, activation_fn))

    def forward(self, summary: th.Tensor, action: th.Tensor) -> th.Tensor:
        return self.net(th.cat([summary, action], dim=-1))


class DeterministicActorHead(nn.Module):
    """μ(h_t) = tanh(MLP(h_t)), in [-1, 1]^action_dim (RDPG, RTD3)."""

    def __init__(self, hidden_size: int, action_dim: int, net_arch: list[int], activation_fn: type[nn.Module]):
        super().__init__()
        self.net = nn.Sequential(*create_mlp(hidden_size, action_dim, net_arch, activation_fn, squash_output=True))

    def forward(self, summary: th.Tensor, deterministic: bool = True) -> th.Tensor:
        return self.net(summary)


class GaussianActorHead(nn.Module):
    """tanh-squashed Gaussian π(·|h_t) (RSAC): mean and log-std (clamped to [-20, 2]) from an MLP."""

    def __init__(self, hidden_size: int, action_dim: int, net_arch: list[int], activation_fn: type[nn.Module]):
        super().__init__()
        self.latent = nn.Sequential(*create_mlp(hidden_size, -1, net_arch, activation_fn))
        width = net_arch[-1] if net_arch else hidden_size
        self.mu, self.log_std = nn.Linear(width, action_dim), nn.Linear(width, action_dim)

    def sample(self, summary: th.Tensor, noise: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """A reparameterised action a = tanh(μ + σ·ε), shape (..., action_dim), and log π(a|h), shape (..., 1);
        ``noise`` is ε ~ N(0, I) of the action's shape (None: drawn here)."""
        latent = self.latent(summary)
        mu, log_std = self.mu(latent), self.log_std(latent).clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = th.randn_like(mu) if noise is None else noise
        u = mu + log_std.exp() * noise
        gaussian = -0.5 * noise**2 - log_std - 0.5 * math.log(2 * math.pi)
        # log |d tanh(u)/du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        squash = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return th.tanh(u), (gaussian - squash).sum(dim=-1, keepdim=True)

    def forward(self, summary: th.Tensor, deterministic: bool = True) -> th.Tensor:
        if deterministic:
            return th.tanh(self.mu(self.latent(summary)))
        return self.sample(summary)[0]


HEADS = {"gaussian": GaussianActorHead, "deterministic": DeterministicActorHead}


class RecurrentActorCriticPolicy(BasePolicy):
    """The actor, ``n_critics`` critics, their targets and one Adam optimiser each.

    :param cell: ``lstm`` or ``gru``, the summarisers' recurrent cell
    :param hidden_size: width of each summariser layer
    :param n_layers: stacked recurrent layers per summariser
    :param net_arch: hidden layer widths of every head (actor and critics)
    :param actor: ``gaussian`` (RSAC) or ``deterministic`` (RDPG, RTD3)
    :param n_critics: critics (each with its own summariser)
    :param actor_target: also keep a target copy of the actor (summariser and head)
    :param action_input: the summarisers also read the previous action (zero at an episode's or a segment's start)

    Optimisers: ``actor_optimizer`` (actor summariser + head) and ``critic_optimizer_<i>`` (critic i's summariser +
    head); :meth:`optimizer_names` lists them for saving.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        cell: str = "lstm",
        hidden_size: int = 256,
        n_layers: int = 2,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        actor: str = "gaussian",
        n_critics: int = 2,
        actor_target: bool = False,
        action_input: bool = False,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        use_sde: bool = False,
    ):
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"recurrent agents read flat vector observations (a 1-D Box), not {observation_space}")
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if actor not in ACTORS:
            raise ValueError(f"actor must be one of {', '.join(ACTORS)}, got {actor!r}")
        if hidden_size < 1 or n_layers < 1 or n_critics < 1:
            raise ValueError(f"hidden_size, n_layers and n_critics must be positive, got {hidden_size}, {n_layers}, {n_critics}")
        if use_sde:
            raise ValueError("use_sde is not supported by the recurrent agents")
        if not isinstance(action_input, bool):
            raise ValueError(f"action_input must be true or false, got {action_input!r}")
        super().__init__(observation_space, action_space, optimizer_class=optimizer_class,
                         optimizer_kwargs=optimizer_kwargs, squash_output=True)
        self.cell, self.hidden_size, self.n_layers = cell, hidden_size, n_layers
        self.net_arch = [256, 256] if net_arch is None else list(net_arch)
        self.activation_fn, self.actor_kind = activation_fn, actor
        self.n_critics, self.actor_target, self.action_input = n_critics, actor_target, action_input
        obs_dim, action_dim = observation_space.shape[0], int(np.prod(action_space.shape))
        self.action_dim = action_dim

        def summariser() -> Summariser:
            return Summariser(obs_dim + (action_dim if action_input else 0), cell, hidden_size, n_layers)

        self.actor_summariser = summariser()
        self.actor_head = HEADS[actor](hidden_size, action_dim, self.net_arch, activation_fn)
        self.critic_summarisers = nn.ModuleList(summariser() for _ in range(n_critics))
        self.critic_heads = nn.ModuleList(QHead(hidden_size, action_dim, self.net_arch, activation_fn) for _ in range(n_critics))
        self.critic_summarisers_target = copy.deepcopy(self.critic_summarisers).requires_grad_(False)
        self.critic_heads_target = copy.deepcopy(self.critic_heads).requires_grad_(False)
        if actor_target:
            self.actor_summariser_target = copy.deepcopy(self.actor_summariser).requires_grad_(False)
            self.actor_head_target = copy.deepcopy(self.actor_head).requires_grad_(False)
        lr = lr_schedule(1)
        self.actor_optimizer = optimizer_class([*self.actor_summariser.parameters(), *self.actor_head.parameters()],
                                               lr=lr, **self.optimizer_kwargs)
        for i in range(n_critics):
            params = [*self.critic_summarisers[i].parameters(), *self.critic_heads[i].parameters()]
            setattr(self, f"critic_optimizer_{i}", optimizer_class(params, lr=lr, **self.optimizer_kwargs))

    def optimizer_names(self) -> list[str]:
        return ["actor_optimizer", *(f"critic_optimizer_{i}" for i in range(self.n_critics))]

    def critic_optimizers(self) -> list[th.optim.Optimizer]:
        return [getattr(self, f"critic_optimizer_{i}") for i in range(self.n_critics)]

    def online_target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) module pairs for the Polyak update."""
        pairs = [(self.critic_summarisers, self.critic_summarisers_target), (self.critic_heads, self.critic_heads_target)]
        if self.actor_target:
            pairs += [(self.actor_summariser, self.actor_summariser_target), (self.actor_head, self.actor_head_target)]
        return pairs

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(cell=self.cell, hidden_size=self.hidden_size, n_layers=self.n_layers, net_arch=self.net_arch,
                    activation_fn=self.activation_fn, actor=self.actor_kind, n_critics=self.n_critics,
                    actor_target=self.actor_target, action_input=self.action_input, optimizer_class=self.optimizer_class,
                    optimizer_kwargs=self.optimizer_kwargs)
        return data

    # -- acting ---------------------------------------------------------------------------------
    def history(self, obs: th.Tensor, actions: th.Tensor | None = None) -> th.Tensor:
        """The summarisers' input sequence for ``obs`` (B, T, obs_dim): the observations themselves, or with
        ``action_input`` [o_t, a_{t-1}] (B, T, obs_dim + action_dim) where ``actions`` (B, ≥ T − 1, action_dim) are the
        [-1, 1]-scaled actions taken (a_{-1} = 0; None: all zero)."""
        if not self.action_input:
            return obs
        previous = th.zeros(*obs.shape[:2], self.action_dim, device=obs.device)
        if actions is not None:
            previous[:, 1:] = actions[:, : obs.shape[1] - 1]
        return th.cat([obs, previous], dim=-1)

    def forward(self, obs: th.Tensor, deterministic: bool = False, actions: th.Tensor | None = None) -> th.Tensor:
        """Actions in [-1, 1] for whole sequences ``obs`` (B, T, obs_dim) from a zero state, after the actions taken
        ``actions`` (see :meth:`history`): (B, T, action_dim)."""
        return self.actor_head(self.actor_summariser(self.history(obs, actions))[0], deterministic)

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """One step from a zero state (no memory): prefer :meth:`predict`, which carries ``state``."""
        return self.forward(observation[:, None, :], deterministic)[:, 0]

    def initial_state(self, n_envs: int) -> tuple[th.Tensor, ...]:
        """The zero state of ``n_envs`` env copies (see :meth:`predict`)."""
        hidden = self.actor_summariser.initial_state(n_envs, self.device)
        return (*hidden, th.zeros(1, n_envs, self.action_dim, device=self.device)) if self.action_input else hidden

    def remember_action(self, state: tuple[np.ndarray, ...], scaled_action: np.ndarray) -> tuple[np.ndarray, ...]:
        """``state`` with the action actually taken ((n_envs, action_dim), [-1, 1]-scaled: exploration noise or a
        random warm-up action may differ from the predicted one) as the previous action (unchanged without
        ``action_input``)."""
        if not self.action_input:
            return state
        return (*state[:-1], np.asarray(scaled_action, dtype=np.float32).reshape(1, -1, self.action_dim))

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Act on one step of ``observation`` ((n_envs, obs_dim), or (obs_dim,) for one env) from ``state`` (None: a
        zero state), zeroing the state of each env copy where ``episode_start`` ((n_envs,) bool) is true. Returns the
        actions in the env's action space (clipped to its bounds) and the new state (arrays (n_layers, n_envs, hidden),
        and with ``action_input`` the action's [-1, 1]-scaled value, (1, n_envs, action_dim))."""
        self.set_training_mode(False)
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        obs = obs.reshape(-1, self.observation_space.shape[0])
        n_envs = obs.shape[0]
        with th.no_grad():
            if state is None:
                state_t = self.initial_state(n_envs)
            else:
                state_t = tuple(th.as_tensor(np.asarray(s), dtype=th.float32, device=self.device) for s in state)
            if episode_start is not None:
                keep = th.as_tensor(~np.asarray(episode_start, dtype=bool).reshape(n_envs), device=self.device)
                state_t = tuple(s * keep.view(1, -1, 1) for s in state_t)
            inputs = th.as_tensor(obs, device=self.device)[:, None, :]
            if self.action_input:
                inputs, state_t = th.cat([inputs, state_t[-1].transpose(0, 1)], dim=-1), state_t[:-1]
            summary, hidden = self.actor_summariser(inputs, state_t)
            scaled = self.actor_head(summary[:, 0], deterministic)
            if self.action_input:
                hidden = (*hidden, scaled[None])
        actions = np.clip(self.unscale_action(scaled.cpu().numpy()), self.action_space.low, self.action_space.high)
        actions = actions.reshape((-1, *self.action_space.shape))
        return (actions[0] if single else actions), tuple(h.cpu().numpy() for h in hidden)
