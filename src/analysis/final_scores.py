"""Final scores of groups of runs, reported the field's way (rliable): ``experiment/plot.py`` prints and draws
them after the learning curves, and ``experiment/evaluate.py`` after its table.

A run's final score is its last value of the metric (plot.py) or its mean evaluation return (evaluate.py). Per
group: the IQM and the mean of its runs' scores with 95 % stratified-bootstrap intervals; between groups, the
probability of improvement P(X > Y) (a run of X beats a run of Y; ties count a half) with its interval; and the
performance profile, the fraction of runs scoring above τ (:mod:`hydrarl.analysis.aggregates`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from hydrarl.analysis.aggregates import SUMMARY, improvement_probabilities, performance_profiles, score_summary
from hydrarl.analysis.output import pyplot
from hydrarl.analysis.tables import text_table

PROFILE_POINTS = 101  # τ values of a performance profile, from the lowest score to the highest


def report(scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> tuple[dict, list]:
    """The groups' :func:`score_summary` and :func:`improvement_probabilities` (empty groups left out)."""
    scores = {k: np.asarray(v, dtype=float) for k, v in scores.items() if len(v)}
    return score_summary(scores, reps, seed), improvement_probabilities(scores, reps, seed)


def report_lines(scores: dict[str, np.ndarray], summary: dict, pairs: list, what: str, reps: int) -> list[str]:
    """The report as text: a markdown table (group, runs, IQM and mean with their intervals), then P(X > Y)."""
    lines = [f"{what}: IQM and mean over runs, [95% stratified-bootstrap interval] ({reps} resamples, rliable)"]
    rows = [[label, str(len(scores[label])), *(str(summary[label][name]) for name in SUMMARY)] for label in summary]
    lines += text_table(["group", "runs", "IQM", "mean"], rows, right=[False, True, False, False], markdown=True).splitlines()
    lines += [f"P({x} > {y}) = {e}" for x, y, e in pairs]
    return lines


def write_final_csv(summary: dict, pairs: list, scores: dict[str, np.ndarray], path: Path) -> None:
    """Rows ``kind, group, other, value, ci_low, ci_high, runs``: one ``iqm`` and one ``mean`` row per group,
    one ``p_improvement`` row per pair, one ``score`` row per run (``other`` = its index in the group)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "group", "other", "value", "ci_low", "ci_high", "runs"])
        for label, estimates in summary.items():
            for name, e in estimates.items():
                w.writerow([name, label, "", f"{e.value:.6g}", f"{e.low:.6g}", f"{e.high:.6g}", len(scores[label])])
        for x, y, e in pairs:
            w.writerow(["p_improvement", x, y, f"{e.value:.6g}", f"{e.low:.6g}", f"{e.high:.6g}", ""])
        for label, values in scores.items():
            for i, v in enumerate(values):
                w.writerow(["score", label, i, f"{v:.6g}", "", "", ""])


def plot_final(scores: dict[str, np.ndarray], summary: dict, metric: str, title: str, colors: dict[str, tuple],
               reps: int = 2000, seed: int = 0):
    """A Figure of two panels: each group's IQM and mean with their intervals, and the performance profiles
    (fraction of runs with a final score above τ, band: 95 % interval)."""
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(10, 4.2), dpi=150, layout="constrained",
                                      gridspec_kw={"width_ratios": [1, 1.4]})
    labels = list(summary)
    for row, label in enumerate(labels):
        for offset, name, marker in ((-0.15, "iqm", "o"), (0.15, "mean", "s")):
            e = summary[label][name]
            left.errorbar(e.value, row + offset, xerr=[[e.value - e.low], [e.high - e.value]], fmt=marker,
                          color=colors[label], capsize=4, ms=6, label=name.upper() if row == 0 else None)
    left.set_yticks(range(len(labels)), labels)
    left.invert_yaxis()
    left.set_xlabel(f"final {metric}")
    left.set_title("IQM (o) and mean (s), 95% interval", fontsize=10)
    left.grid(alpha=0.3, axis="x")
    every = np.concatenate([scores[label] for label in labels])
    taus = np.linspace(every.min(), every.max(), PROFILE_POINTS) if every.max() > every.min() else every[:1]
    profiles, bands = performance_profiles({label: scores[label] for label in labels}, taus, reps, seed)
    for label in labels:
        right.plot(taus, profiles[label], color=colors[label], lw=2, label=f"{label} ({len(scores[label])} runs)")
        right.fill_between(taus, bands[label][0], bands[label][1], color=colors[label], alpha=0.2, lw=0)
    right.set_xlabel(f"τ (final {metric})")
    right.set_ylabel("fraction of runs with score > τ")
    right.set_ylim(-0.03, 1.03)
    right.set_title("performance profile", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=9, loc="best")
    fig.suptitle(f"{title + ': ' if title else ''}final {metric} per run (rliable, {reps} resamples)", fontsize=10)
    return fig


__all__ = ["PROFILE_POINTS", "plot_final", "report", "report_lines", "write_final_csv"]
