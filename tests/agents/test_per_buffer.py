"""The prioritised replay of per_ddqn: the sum-tree (sums, sampling frequencies, stratification) and the
buffer (max priority for new transitions, TD-error priorities, importance weights, the beta schedule,
several envs, optimize_memory_usage, recency-rank sampling without replacement)."""

import numpy as np
import pytest
from gymnasium import spaces
from scipy import stats

from hydrarl.agents.per_buffer import PrioritizedReplayBuffer, linear_ranks_without_replacement
from hydrarl.agents.sum_tree import SumTree

# -- sum-tree ---------------------------------------------------------------------------------------


def test_sum_tree_total_prefix_sums_and_max_after_random_updates():
    rng = np.random.default_rng(0)
    tree, leaves = SumTree(37), np.zeros(37)  # 37: not a power of two
    for _ in range(50):
        idx = rng.integers(0, 37, size=rng.integers(1, 12))  # repeats included: the last value wins
        values = rng.exponential(size=idx.size)
        tree.update(idx, values)
        for i, v in zip(idx, values, strict=True):
            leaves[i] = v
        np.testing.assert_array_equal(tree.leaves, leaves)
        assert tree.total == pytest.approx(leaves.sum(), rel=1e-12)
        assert tree.max == leaves.max()
    for i in range(38):
        assert tree.prefix_sum(i) == pytest.approx(leaves[:i].sum(), rel=1e-12, abs=1e-12)
    np.testing.assert_array_equal(tree.get([3, 5]), leaves[[3, 5]])
    # u in [prefix(i), prefix(i+1)) finds leaf i (its middle, to stay clear of rounding at the edges)
    mids = np.array([tree.prefix_sum(i) + leaves[i] / 2 for i in range(37)])
    np.testing.assert_array_equal(tree.find(mids), np.arange(37))
    # internal nodes are a function of the leaves: a rebuild is bit-identical
    rebuilt = SumTree(37)
    rebuilt.set_all(leaves)
    np.testing.assert_array_equal(rebuilt._sum, tree._sum)
    np.testing.assert_array_equal(rebuilt._max, tree._max)


def test_sum_tree_max_follows_the_current_leaves():
    tree = SumTree(8)
    assert tree.max == 0 and tree.total == 0
    tree.update([0, 5, 7], [1.0, 4.0, 2.0])
    assert tree.max == 4.0
    tree.update([5], [0.5])  # lowering the largest priority lowers the max
    assert tree.max == 2.0
    with pytest.raises(ValueError):
        tree.update([1], [-1.0])
    with pytest.raises(IndexError):
        tree.update([8], [1.0])


def test_sum_tree_sampling_frequencies_match_priorities():
    rng = np.random.RandomState(1)
    priorities = rng.exponential(size=20)
    priorities[[4, 11]] = 0.0  # empty slots are never drawn
    tree = SumTree(20)
    tree.update(np.arange(20), priorities)
    n = 40_000
    iid = tree.find(rng.random_sample(n) * tree.total)
    stratified = np.concatenate([tree.sample(32, rng) for _ in range(n // 32)])
    expected = priorities / priorities.sum()
    nonzero = expected > 0
    for draws in (iid, stratified):
        counts = np.bincount(draws, minlength=20)
        assert counts[~nonzero].sum() == 0
        chi2 = ((counts[nonzero] - len(draws) * expected[nonzero]) ** 2 / (len(draws) * expected[nonzero])).sum()
        assert chi2 < stats.chi2.ppf(0.999, nonzero.sum() - 1), (chi2, counts, expected)
    # and a wrong distribution is rejected by the same statistic (the test can fail)
    counts = np.bincount(iid, minlength=20)
    uniform = np.where(nonzero, 1 / nonzero.sum(), 0)
    chi2_uniform = ((counts[nonzero] - n * uniform[nonzero]) ** 2 / (n * uniform[nonzero])).sum()
    assert chi2_uniform > stats.chi2.ppf(0.999, nonzero.sum() - 1)


def test_sum_tree_batch_is_stratified():
    rng = np.random.RandomState(2)
    tree = SumTree(16)
    tree.update(np.arange(16), np.ones(16))
    np.testing.assert_array_equal(tree.sample(16, rng), np.arange(16))  # one draw per equal segment
    priorities = rng.exponential(size=16)
    tree.update(np.arange(16), priorities)
    prefix = np.concatenate([[0.0], np.cumsum(priorities)])
    for _ in range(200):
        batch = tree.sample(5, rng)
        segment = tree.total / 5
        for j, leaf in enumerate(batch):  # draw j falls in segment [j, j+1) * total / 5
            assert prefix[leaf] < (j + 1) * segment + 1e-9 and prefix[leaf + 1] > j * segment - 1e-9
        assert np.all(np.diff(batch) >= 0)


# -- the buffer -------------------------------------------------------------------------------------

OBS = spaces.Box(-1e6, 1e6, shape=(2,), dtype=np.float32)


def make_buffer(size=10, n_envs=1, **kwargs):
    return PrioritizedReplayBuffer(size, OBS, spaces.Discrete(3), device="cpu", n_envs=n_envs, **kwargs)


def add_steps(buffer, first, count):
    """Add steps first..first+count-1; step t, env e has obs (t, e), next obs (t + 1, e), reward 10 t + e."""
    n = buffer.n_envs
    for t in range(first, first + count):
        obs = np.array([[t, e] for e in range(n)], dtype=np.float32)
        buffer.add(obs, obs + [1, 0], np.zeros(n), 10.0 * t + np.arange(n), np.zeros(n), [{}] * n)


def test_new_transitions_get_the_max_priority():
    buffer = make_buffer(size=10)
    add_steps(buffer, 0, 3)
    np.testing.assert_array_equal(buffer.tree.leaves[:3], 1.0)  # empty buffer: priority 1
    buffer.update_priorities(np.array([0, 1, 2]), np.array([0.5, 3.0, 0.1]))
    top = (3.0 + buffer.priority_eps) ** buffer.alpha
    add_steps(buffer, 3, 1)
    assert buffer.tree.leaves[3] == pytest.approx(top) and buffer.tree.max == pytest.approx(top)
    buffer.update_priorities(np.array([1, 3]), np.array([0.2, 0.2]))  # the max is the buffer's current one
    add_steps(buffer, 4, 1)
    assert buffer.tree.leaves[4] == pytest.approx((0.5 + buffer.priority_eps) ** buffer.alpha)


def test_priorities_update_from_td_errors():
    buffer = make_buffer(size=8, alpha=0.7, priority_eps=0.01)
    add_steps(buffer, 0, 8)
    td = np.array([-2.0, 0.0, 0.5, 4.0])
    buffer.update_priorities(np.array([0, 2, 5, 7]), td)
    np.testing.assert_allclose(buffer.tree.leaves[[0, 2, 5, 7]], (np.abs(td) + 0.01) ** 0.7)
    np.testing.assert_array_equal(buffer.tree.leaves[[1, 3, 4, 6]], 1.0)
    assert buffer.tree.total == pytest.approx(buffer.tree.leaves.sum())


def test_importance_weights_follow_the_formula():
    buffer = make_buffer(size=6, alpha=0.5, beta0=0.4, priority_eps=1e-6)
    add_steps(buffer, 0, 5)  # N = 5 of 6 slots
    td = np.array([0.1, 1.0, 2.0, 4.0, 8.0])
    buffer.update_priorities(np.arange(5), td)
    buffer.set_progress(0.5)
    beta = 0.4 + 0.6 * 0.5
    assert buffer.beta == pytest.approx(beta)
    np.random.seed(4)
    samples = buffer.sample(64)
    p = (td + 1e-6) ** 0.5
    w = (5 * p[samples.indices] / p.sum()) ** -beta
    np.testing.assert_allclose(samples.weights.numpy().reshape(-1), w / w.max(), rtol=1e-5)
    # the samples are the transitions at those indices
    np.testing.assert_array_equal(samples.rewards.numpy().reshape(-1), 10.0 * samples.indices)
    np.testing.assert_array_equal(samples.next_observations[:, 0].numpy(), samples.observations[:, 0].numpy() + 1)


def test_beta_anneals_linearly_to_one():
    buffer = make_buffer(beta0=0.4)
    for done, beta in ((0.0, 0.4), (0.25, 0.55), (1.0, 1.0), (3.0, 1.0), (-1.0, 0.4)):
        buffer.set_progress(done)
        assert buffer.beta == pytest.approx(beta)


def test_several_envs_sample_consistent_transitions():
    buffer = make_buffer(size=12, n_envs=3)  # 4 rows of 3
    add_steps(buffer, 0, 6)  # wraps: rows hold steps 4, 5, 2, 3
    assert buffer.full and buffer.n_transitions() == 12
    buffer.update_priorities(np.arange(12), np.arange(12, dtype=float))
    np.random.seed(0)
    s = buffer.sample(256)
    obs, nxt, rew = s.observations.numpy(), s.next_observations.numpy(), s.rewards.numpy().reshape(-1)
    rows, envs = np.divmod(s.indices, 3)
    np.testing.assert_array_equal(obs[:, 1], envs)
    np.testing.assert_array_equal(nxt[:, 0], obs[:, 0] + 1)
    np.testing.assert_array_equal(rew, 10 * obs[:, 0] + envs)
    np.testing.assert_array_equal(obs[:, 0], np.array([4, 5, 2, 3])[rows])


def test_optimize_memory_usage_never_samples_the_overwritten_slot():
    buffer = make_buffer(size=5, optimize_memory_usage=True, handle_timeout_termination=False)
    add_steps(buffer, 0, 7)  # full; row pos=2 holds step 2 whose next obs was overwritten by step 6's obs
    assert buffer.full and buffer.pos == 2 and buffer.tree.leaves[2] == 0
    assert buffer.n_transitions() == 4
    np.random.seed(0)
    s = buffer.sample(500)
    assert 2 not in set(s.indices.tolist())
    np.testing.assert_array_equal(s.next_observations[:, 0].numpy(), s.observations[:, 0].numpy() + 1)
    recency = make_buffer(size=5, optimize_memory_usage=True, handle_timeout_termination=False, prioritization="recency")
    add_steps(recency, 0, 7)
    for _ in range(50):
        s = recency.sample(3)
        assert 2 not in set(s.indices.tolist())
        np.testing.assert_array_equal(s.next_observations[:, 0].numpy(), s.observations[:, 0].numpy() + 1)


def test_recency_mode_samples_without_replacement_by_rank():
    buffer = make_buffer(size=20, n_envs=2, prioritization="recency")
    add_steps(buffer, 0, 15)  # 10 rows, full, holding steps 5..14; rank = 2 (t - 5) + e + 1
    n = buffer.n_transitions()
    assert n == 20
    np.random.seed(0)

    def ranks(s):  # from the stored observations of a batch
        obs = s.observations.numpy()
        return (2 * (obs[:, 0] - 5) + obs[:, 1] + 1).astype(int)

    def drawn_ranks(batch):  # the same from the indices alone (fast, for counting)
        rows, envs = np.divmod(buffer.sample_indices(batch)[0], 2)
        return (2 * (buffer.observations[rows, envs, 0] - 5) + envs + 1).astype(int)

    for batch in (8, 15, 20, 30):  # 15 and up: numpy's weighted choice path; 30 > N: all N once
        for _ in range(20):
            s = buffer.sample(batch)
            assert len(set(s.indices.tolist())) == len(s.indices) == min(batch, n)  # without replacement
            assert np.all(s.weights.numpy() == 1)
            assert sorted(ranks(s)) == sorted(set(ranks(s)))
    buffer.update_priorities(np.arange(3), np.ones(3))  # no TD priorities: nothing happens
    # one draw: P(rank r) = r / sum(1..N), checked by chi-square
    single = np.concatenate([drawn_ranks(1) for _ in range(20_000)])
    counts = np.bincount(single, minlength=n + 1)[1:]
    expected = 20_000 * np.arange(1, n + 1) / (n * (n + 1) / 2)
    assert ((counts - expected) ** 2 / expected).sum() < stats.chi2.ppf(0.999, n - 1)
    # batches of 8: inclusion probability rises with the rank
    inclusion = np.bincount(np.concatenate([drawn_ranks(8) for _ in range(4000)]), minlength=n + 1)[1:] / 4000
    assert inclusion[-1] > inclusion[n // 2] > inclusion[0]
    assert stats.spearmanr(np.arange(n), inclusion).statistic > 0.95


def test_linear_ranks_without_replacement_are_exact_successive_draws():
    # P(first = r) ∝ r; P(second = r | first = f) ∝ r over r != f: check the pair distribution for n = 4
    rng = np.random.RandomState(5)
    draws = np.array([linear_ranks_without_replacement(4, 2, rng) for _ in range(30_000)])
    r = np.arange(1, 5)
    expected = {(a, b): a / 10 * b / (10 - a) for a in r for b in r if a != b}
    observed = {k: 0 for k in expected}
    for a, b in draws.tolist():
        observed[(a, b)] += 1
    exp = np.array([expected[k] * 30_000 for k in expected])
    obs = np.array([observed[k] for k in expected])
    assert ((obs - exp) ** 2 / exp).sum() < stats.chi2.ppf(0.999, len(exp) - 1)


def test_buffer_refuses_bad_settings():
    with pytest.raises(ValueError, match="prioritization"):
        make_buffer(prioritization="rank")
    with pytest.raises(ValueError, match="beta0"):
        make_buffer(beta0=1.5)
    with pytest.raises(ValueError, match="Dict"):
        PrioritizedReplayBuffer(10, spaces.Dict({"a": OBS}), spaces.Discrete(2), device="cpu")
