"""Prioritised experience replay for SB3 off-policy agents (Schaul et al. 2016, proportional variant),
plus the recency-rank scheme of our CarRacing users.

``PrioritizedReplayBuffer`` is an SB3 ``ReplayBuffer`` (same storage, ``add``, ``n_envs``,
``optimize_memory_usage``, ``handle_timeout_termination``) whose ``sample`` draws transitions by
priority and returns :class:`PrioritizedReplayBufferSamples`: SB3's ``ReplayBufferSamples`` fields
plus ``weights`` (importance-sampling weights, torch ``(B, 1)``) and ``indices`` (numpy ``(B,)``,
flat transition indices ``row * n_envs + env`` to hand back to ``update_priorities``).

``prioritization="proportional"`` (default)
    Priority p_i = (|δ_i| + ε)^α, kept in a :class:`~hydrarl.agents.sum_tree.SumTree` over all
    ``buffer_size`` slots. A new transition gets the largest priority in the buffer (1.0 in an
    empty one), so it is replayed at least once soon. Batches are drawn stratified with
    P(i) = p_i / Σ p. Weights w_i = (N · P(i))^(−β) / max_j w_j, N the number of stored
    transitions and the maximum taken over the batch (weights only scale updates down).
    β runs linearly from ``beta0`` to 1: the agent calls :meth:`set_progress` with the fraction of
    the run done.
``prioritization="recency"``
    No TD priorities: a batch is drawn **without replacement** with P(i) ∝ rank of i by age (oldest
    stored transition rank 1, newest rank N; transitions of one step ordered by env index), each
    draw among those not yet drawn. Weights are all 1; ``update_priorities`` does nothing.

With ``optimize_memory_usage`` the slot at ``pos`` of a full buffer holds no valid next
observation (SB3 stores it in the next row); its priority is set to 0 (and recency sampling skips
it), so it is never drawn.

Checkpoints: the sum-tree is not pickled. Its leaves are the array attribute ``priorities``
(``(buffer_size, n_envs)``, a view of the tree), which ``hydrarl.training.checkpoint`` trims to the
filled rows like the other per-slot arrays; after loading, the tree is rebuilt from those leaves on
first use. Internal nodes are a pure function of the leaves (see ``sum_tree``), so the rebuilt tree
equals the saved one exactly.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from hydrarl.agents.sum_tree import SumTree

PRIORITIZATIONS = ("proportional", "recency")


class PrioritizedReplayBufferSamples(NamedTuple):
    """SB3's ``ReplayBufferSamples`` fields (same names, same order) + ``weights`` + ``indices``."""

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor | None = None   # n-step discounts in SB3; always None here (1-step)
    weights: th.Tensor | None = None     # (B, 1) float32 importance-sampling weights
    indices: np.ndarray | None = None    # (B,) int64 flat indices row * n_envs + env


def linear_ranks_without_replacement(n: int, k: int, rng: Any = np.random) -> np.ndarray:
    """``k`` distinct ranks from 1..n drawn one after another, each with probability proportional to
    its rank among the ranks not drawn yet.

    For k <= n/2: inverse-CDF draws from P(r) = 2r / (n(n+1)) (CDF(r) = r(r+1) / (n(n+1))), a draw
    that repeats an earlier one is rejected and drawn again: O(k) expected, no O(n) array. For larger
    k, numpy's weighted ``choice(replace=False)`` over an explicit (n,) weight vector.
    """
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} distinct ranks from {n}")
    if k > n // 2:
        weights = np.arange(1, n + 1, dtype=np.float64)
        return rng.choice(n, size=k, replace=False, p=weights / weights.sum()) + 1
    scale = float(n) * float(n + 1)
    chosen: list[int] = []
    seen: set[int] = set()
    while len(chosen) < k:
        c = rng.random_sample(k - len(chosen)) * scale
        r = np.floor((np.sqrt(1.0 + 4.0 * c) - 1.0) / 2.0).astype(np.int64) + 1  # smallest r: r(r+1) > c
        r = np.clip(r, 1, n)
        r += (r * (r + 1) <= c) & (r < n)          # rounding: one too small
        r -= ((r - 1) * r > c) & (r > 1)            # rounding: one too large
        for rank in r.tolist():
            if rank not in seen:
                seen.add(rank)
                chosen.append(rank)
    return np.asarray(chosen, dtype=np.int64)


class PrioritizedReplayBuffer(ReplayBuffer):
    """SB3 replay buffer with proportional prioritised sampling (or recency-rank sampling).

    :param prioritization: ``proportional`` (TD-error priorities, IS weights) or ``recency``
    :param alpha: priority exponent α (0: uniform)
    :param beta0: initial IS exponent β, annealed to 1 by :meth:`set_progress`
    :param priority_eps: ε added to |δ| so that no stored transition has priority 0
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        prioritization: str = "proportional",
        alpha: float = 0.6,
        beta0: float = 0.4,
        priority_eps: float = 1e-6,
    ):
        if isinstance(observation_space, spaces.Dict):
            raise ValueError("PrioritizedReplayBuffer stores array observations; this env has Dict observations")
        if prioritization not in PRIORITIZATIONS:
            raise ValueError(f"prioritization must be one of {', '.join(PRIORITIZATIONS)}, got {prioritization!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not 0 <= beta0 <= 1:
            raise ValueError(f"beta0 must lie in [0, 1], got {beta0}")
        if priority_eps <= 0:
            raise ValueError(f"priority_eps must be > 0, got {priority_eps}")
        super().__init__(buffer_size, observation_space, action_space, device, n_envs=n_envs,
                         optimize_memory_usage=optimize_memory_usage, handle_timeout_termination=handle_timeout_termination)
        self.prioritization = prioritization
        self.alpha, self.beta0, self.priority_eps = float(alpha), float(beta0), float(priority_eps)
        self.beta = self.beta0
        self._tree: SumTree | None = None
        self.priorities: np.ndarray | None = None  # (buffer_size, n_envs) view of the tree's leaves
        if prioritization == "proportional":
            self._attach(SumTree(self.buffer_size * self.n_envs))

    # -- the sum-tree and its leaves ---------------------------------------------------------
    def _attach(self, tree: SumTree) -> None:
        self._tree = tree
        self.priorities = tree.leaves.reshape(self.buffer_size, self.n_envs)

    @property
    def tree(self) -> SumTree:
        """The sum-tree of priorities (proportional mode), rebuilt from ``priorities`` after loading."""
        if self._tree is None:
            if self.prioritization != "proportional":
                raise AttributeError("recency prioritization keeps no sum-tree")
            tree = SumTree(self.buffer_size * self.n_envs)
            tree.set_all(self.priorities.reshape(-1))
            self._attach(tree)
        return self._tree

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tree"] = None  # the leaves (``priorities``) are enough; see module docstring
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def reset(self) -> None:
        super().reset()
        if self.prioritization == "proportional":
            self._attach(SumTree(self.buffer_size * self.n_envs))

    # -- which slots hold valid transitions --------------------------------------------------
    def _valid_rows(self) -> tuple[int, int]:
        """(oldest valid row, number of valid rows), rows in age order from the oldest."""
        if not self.full:
            return 0, self.pos
        if self.optimize_memory_usage:  # row ``pos`` lost its next observation
            return (self.pos + 1) % self.buffer_size, self.buffer_size - 1
        return self.pos, self.buffer_size

    def n_transitions(self) -> int:
        """N: the number of transitions that can be sampled."""
        return self._valid_rows()[1] * self.n_envs

    def _flat(self, row: int) -> np.ndarray:
        return row * self.n_envs + np.arange(self.n_envs)

    # -- storing -----------------------------------------------------------------------------
    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        row = self.pos
        super().add(obs, next_obs, action, reward, done, infos)
        if self.prioritization != "proportional":
            return
        tree = self.tree
        newest = tree.max if tree.max > 0 else 1.0  # max priority in the buffer
        indices, values = self._flat(row), np.full(self.n_envs, newest)
        if self.optimize_memory_usage and self.full and self.pos != row:
            indices = np.concatenate([indices, self._flat(self.pos)])
            values = np.concatenate([values, np.zeros(self.n_envs)])
        tree.update(indices, values)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """p_i = (|δ_i| + ε)^α for the sampled ``indices`` (a no-op in recency mode)."""
        if self.prioritization != "proportional":
            return
        priorities = (np.abs(np.asarray(td_errors, dtype=np.float64)).reshape(-1) + self.priority_eps) ** self.alpha
        self.tree.update(indices, priorities)

    def set_progress(self, fraction_done: float) -> None:
        """β = β0 + (1 − β0) · fraction of the run done (clipped to [0, 1])."""
        self.beta = self.beta0 + (1.0 - self.beta0) * min(max(float(fraction_done), 0.0), 1.0)

    # -- sampling ----------------------------------------------------------------------------
    def importance_weights(self, indices: np.ndarray) -> np.ndarray:
        """w_i = (N · P(i))^(−β), normalised by the batch maximum; float32 (B,)."""
        tree = self.tree
        probabilities = tree.get(indices) / tree.total
        weights = (self.n_transitions() * probabilities) ** (-self.beta)
        return (weights / weights.max()).astype(np.float32)

    def sample_indices(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat indices (B,), IS weights (B,)) of one batch."""
        n = self.n_transitions()
        if n == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if self.prioritization == "proportional":
            indices = self.tree.sample(batch_size)
            return indices, self.importance_weights(indices)
        start, _ = self._valid_rows()
        order = linear_ranks_without_replacement(n, min(batch_size, n)) - 1  # 0 = oldest
        rows = (start + order // self.n_envs) % self.buffer_size
        indices = rows * self.n_envs + order % self.n_envs
        return indices, np.ones(len(indices), dtype=np.float32)

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> PrioritizedReplayBufferSamples:
        """A batch by priority; in recency mode min(batch_size, N) distinct transitions."""
        indices, weights = self.sample_indices(batch_size)
        rows, envs = np.divmod(indices, self.n_envs)
        if self.optimize_memory_usage:
            next_obs = self.observations[(rows + 1) % self.buffer_size, envs]
        else:
            next_obs = self.next_observations[rows, envs]
        data = (
            self._normalize_obs(self.observations[rows, envs], env),
            self.actions[rows, envs],
            self._normalize_obs(next_obs, env),
            (self.dones[rows, envs] * (1 - self.timeouts[rows, envs])).reshape(-1, 1),  # timeouts do not end the return
            self._normalize_reward(self.rewards[rows, envs].reshape(-1, 1), env),
        )
        return PrioritizedReplayBufferSamples(
            *map(self.to_torch, data), weights=self.to_torch(weights.reshape(-1, 1)), indices=indices
        )
