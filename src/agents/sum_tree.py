"""A sum-tree: N non-negative priorities with O(log N) updates and prefix-sum sampling.

Layout (array-backed, 1-indexed heap): ``capacity`` leaves are rounded up to a power of two
``L``; node ``k`` has children ``2k`` and ``2k + 1``; leaf ``i`` lives at ``L + i``; node 1 is the
root. Two arrays of shape ``(2L,)`` (float64) share that layout: ``_sum`` (a node holds the sum of
its leaves) and ``_max`` (their maximum). Leaves ``capacity..L-1`` are padding and stay 0.

Every internal node is recomputed from its two children (``left + right``), never adjusted by a
difference, so the tree is a pure function of its leaves: a tree rebuilt from saved leaves is
bit-for-bit the tree that was saved (the replay buffer relies on this to checkpoint only leaves).

Costs (N = capacity, B = number of indices or draws):

=====================  ==========================  ==========================
operation              time                        shapes
=====================  ==========================  ==========================
``update(idx, p)``     O(B log N), vectorised      idx (B,) int, p (B,) float
``set_all(p)``         O(N)                        p (N,)
``get(idx)``           O(B)                        -> (B,)
``total`` / ``max``    O(1)                        float
``find(u)``            O(B log N), vectorised      u (B,) in [0, total) -> (B,) int
``sample(B)``          O(B log N), stratified      -> (B,) int
=====================  ==========================  ==========================
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Sums and maxima over ``capacity`` priorities (leaves), with batched updates and sampling."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._leaf0 = 1 << max(0, (self.capacity - 1).bit_length())  # L: leaves rounded up to a power of 2
        self._depth = self._leaf0.bit_length() - 1                    # levels below the root
        self._sum = np.zeros(2 * self._leaf0, dtype=np.float64)
        self._max = np.zeros(2 * self._leaf0, dtype=np.float64)

    # -- reading -----------------------------------------------------------------------------
    @property
    def leaves(self) -> np.ndarray:
        """The ``capacity`` priorities: a read-only view (write through ``update``/``set_all``)."""
        view = self._sum[self._leaf0 : self._leaf0 + self.capacity]
        view.flags.writeable = False
        return view

    @property
    def total(self) -> float:
        """Sum of all priorities."""
        return float(self._sum[1])

    @property
    def max(self) -> float:
        """Largest priority (0 for an empty tree)."""
        return float(self._max[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Priorities of leaves ``indices``."""
        return self._sum[self._leaf0 + np.asarray(indices, dtype=np.int64)]

    def prefix_sum(self, i: int) -> float:
        """Sum of priorities of leaves ``0..i-1``, by walking up the tree (O(log N))."""
        if not 0 <= i <= self.capacity:
            raise IndexError(i)
        total, node = 0.0, self._leaf0 + i
        while node > 1:  # every left sibling of the path to leaf i lies wholly before it
            if node & 1:
                total += self._sum[node - 1]
            node >>= 1
        return total

    # -- writing -----------------------------------------------------------------------------
    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaves ``indices`` to ``priorities`` (>= 0) and refresh their ancestors.

        A repeated index takes the value given last.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        priorities = np.broadcast_to(np.asarray(priorities, dtype=np.float64), indices.shape)
        if indices.size == 0:
            return
        if indices.min() < 0 or indices.max() >= self.capacity:
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        if not np.all(np.isfinite(priorities)) or priorities.min() < 0:
            raise ValueError("priorities must be finite and >= 0")
        # keep the last value of each repeated index: unique over the reversed arrays
        last, first_in_reversed = np.unique(indices[::-1], return_index=True)
        nodes = last + self._leaf0
        values = priorities[::-1][first_in_reversed]
        self._sum[nodes] = values
        self._max[nodes] = values
        for _ in range(self._depth):
            nodes = np.unique(nodes >> 1)
            self._refresh(nodes)

    def set_all(self, priorities: np.ndarray) -> None:
        """Replace all ``capacity`` leaves and rebuild every level (O(N))."""
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        if priorities.shape != (self.capacity,):
            raise ValueError(f"expected {self.capacity} priorities, got {priorities.shape[0]}")
        if not np.all(np.isfinite(priorities)) or (priorities.size and priorities.min() < 0):
            raise ValueError("priorities must be finite and >= 0")
        self._sum[:] = 0.0
        self._max[:] = 0.0
        self._sum[self._leaf0 : self._leaf0 + self.capacity] = priorities
        self._max[self._leaf0 : self._leaf0 + self.capacity] = priorities
        width = self._leaf0
        while width > 1:
            width >>= 1
            self._refresh(np.arange(width, 2 * width))

    def _refresh(self, nodes: np.ndarray) -> None:
        left, right = 2 * nodes, 2 * nodes + 1
        self._sum[nodes] = self._sum[left] + self._sum[right]
        self._max[nodes] = np.maximum(self._max[left], self._max[right])

    # -- sampling ----------------------------------------------------------------------------
    def find(self, values: np.ndarray) -> np.ndarray:
        """For each ``u`` in ``values`` (0 <= u < total), the leaf ``i`` with
        prefix_sum(i) <= u < prefix_sum(i + 1); leaves with priority 0 are never returned."""
        u = np.array(values, dtype=np.float64).reshape(-1)
        if self.total <= 0:
            raise ValueError("cannot sample from a sum-tree whose priorities are all 0")
        nodes = np.ones(u.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * nodes
            left_sum = self._sum[left]
            # go right when u lies past the left subtree; a rounding overshoot into an empty right
            # subtree stays left (the node's sum is > 0, so its left subtree is not empty then)
            go_right = (u >= left_sum) & (self._sum[left + 1] > 0)
            u = np.where(go_right, u - left_sum, u)
            nodes = left + go_right
        return nodes - self._leaf0

    def sample(self, batch_size: int, rng: np.random.RandomState | np.random.Generator | None = None) -> np.ndarray:
        """``batch_size`` leaves drawn with P(i) = p_i / total, stratified: the range [0, total) is cut
        into ``batch_size`` equal segments and one value is drawn uniformly in each (so every batch
        spans the whole distribution). Draws are independent across segments; a leaf may repeat."""
        rng = np.random if rng is None else rng
        draw = rng.random if isinstance(rng, np.random.Generator) else rng.random_sample
        u = np.arange(batch_size, dtype=np.float64) + draw(batch_size)
        return self.find(u * (self.total / batch_size))
