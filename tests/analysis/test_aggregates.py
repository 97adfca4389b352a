"""rliable's aggregates as the analysis tools use them, against hand computations: IQM (the 25 % trimmed mean),
intervals from its stratified bootstrap, probability of improvement and performance profiles; seeded and leaving
numpy's global random state as it was."""

from __future__ import annotations

import numpy as np
import pytest

from hydrarl.analysis import aggregates as A


def test_iqm_is_the_quarter_trimmed_mean():
    assert A.aggregate(np.array([1.0, 2, 3, 100]), "iqm") == pytest.approx(2.5)       # the middle two of four
    assert A.aggregate(np.array([0.0, 10, 20, 30, 1000]), "iqm") == pytest.approx(20)  # one cut at each end
    assert A.aggregate(np.array([1.0, 2, 9]), "iqm") == pytest.approx(4)               # three: none cut
    matrix = np.array([[4.0, 1], [0, 2], [8, 3], [5, 100]])
    np.testing.assert_allclose(A.aggregate(matrix, "iqm"), [4.5, 2.5])                  # per column
    np.testing.assert_allclose(A.aggregate(matrix.T, "mean", axis=1), [4.25, 26.5])
    with pytest.raises(ValueError, match="one of mean, iqm"):
        A.aggregate(matrix, "median")


def test_intervals_are_seeded_and_leave_the_global_random_state_alone():
    matrix = np.random.default_rng(0).normal(size=(6, 4))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    value, low, high = A.interval_estimates(matrix, "iqm", reps=300, seed=7)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.testing.assert_allclose(value, A.aggregate(matrix, "iqm"))
    assert np.all((low <= value) & (value <= high)) and np.all(high > low)
    again = A.interval_estimates(matrix, "iqm", reps=300, seed=7)
    other = A.interval_estimates(matrix, "iqm", reps=300, seed=8)
    np.testing.assert_array_equal(again[1], low)
    assert not np.array_equal(other[1], low)


def test_probability_of_improvement_counts_pairs_of_runs():
    scores = {"a": np.array([3.0, 5]), "b": np.array([2.0, 4]), "c": np.array([2.0, 2])}
    pairs = {(x, y): e for x, y, e in A.improvement_probabilities(scores, reps=200)}
    assert list(pairs) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert pairs["a", "b"].value == pytest.approx(0.75)   # 3 > 2, 3 < 4, 5 > 2, 5 > 4
    assert pairs["a", "c"].value == pytest.approx(1.0)
    assert pairs["b", "c"].value == pytest.approx(0.75)   # 2 = 2 twice (a half each), 4 > 2 twice
    assert pairs["a", "b"].low <= 0.75 <= pairs["a", "b"].high
    assert A.improvement_probabilities({"a": scores["a"]}) == []
    many = {**scores, "d": np.array([9.0, 9]), "e": np.array([0.0, 1])}  # 5 groups: the best (d) against the rest
    assert [(x, y) for x, y, _ in A.improvement_probabilities(many, reps=50)] == [("d", "a"), ("d", "b"), ("d", "c"), ("d", "e")]


def test_summary_and_profiles():
    summary = A.score_summary({"x": np.array([1.0, 2, 3, 10])}, reps=500)["x"]
    assert (summary["iqm"].value, summary["mean"].value) == pytest.approx((2.5, 4))
    assert all(e.low <= e.value <= e.high for e in summary.values())
    assert str(summary["mean"]).startswith("4 [")
    profile, band = A.performance_profiles({"x": np.array([1.0, 2, 3])}, np.array([0, 1.5, 2.5, 3]), reps=200)
    np.testing.assert_allclose(profile["x"], [1, 2 / 3, 1 / 3, 0])
    assert band["x"].shape == (2, 4)
