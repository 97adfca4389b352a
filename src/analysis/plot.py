"""``experiment/plot.py``: learning curves from MLflow runs, aggregated across seeds.

    python experiment/plot.py --experiment FetchReach --algorithm sac_her td3_her --metric eval/success_rate --agg iqm
    python experiment/plot.py --tag sweep.study=FetchReach-sac_her --out runs/plots/study
    python experiment/plot.py --env Bumps --algorithm rsac sac --max-steps 200000   # at a budget

Selects runs (see ``hydrarl.analysis.runs``), groups them by a tag (default ``algorithm``; labelled
``env/algorithm`` when the runs span several envs), and draws per group the mean or IQM over its runs
against env steps with a 95 % bootstrap band from rliable (see ``hydrarl.analysis.curves`` for how runs of
different lengths are combined). Then each run's final score (its last value of the metric), per group
with rliable: IQM and mean with intervals, P(X > Y) between groups, performance profiles
(``hydrarl.analysis.final_scores``). Writes ``<out>/<metric>.png`` and ``.csv`` (curves) and
``<out>/<metric>_final.png`` and ``.csv`` (final scores) per metric and prints their paths. Bad input: one
line on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Callable
from pathlib import Path

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.analysis.curves import AGGREGATES, Curve, aggregate_runs
from hydrarl.analysis.final_scores import plot_final, report, report_lines, write_final_csv
from hydrarl.analysis.output import out_argument, output_folder, pyplot, save_figure
from hydrarl.analysis.runs import add_selection_arguments, metric_history, select_from_args
from hydrarl.cli_args import ArgumentParser, number
from hydrarl.errors import UserError, exit_on_user_error

DEFAULT_METRICS = ("eval/success_rate", "eval/mean_reward")  # the first one the runs have
PROGRESS_EVERY = 25  # runs between progress lines while fetching histories


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="experiment/plot.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_selection_arguments(p)
    g = p.add_argument_group("curves")
    g.add_argument("--metric", nargs="+", action="extend", metavar="KEY",
                   help="metrics to plot, one PNG each (default eval/success_rate where the runs have it, else eval/mean_reward)")
    g.add_argument("--group-by", default="algorithm", metavar="KEY", help="tag (or param) whose value makes one curve (default algorithm)")
    g.add_argument("--agg", choices=AGGREGATES, default="mean", help="aggregate over runs at each step (default mean)")
    g.add_argument("--n-boot", type=number(int, "bootstrap resamples", least=1), default=2000, help="bootstrap resamples for the 95%% intervals (default 2000)")
    g.add_argument("--seed", type=number(int, "seed of the bootstrap RNG", least=0), default=0, help="seed of the bootstrap RNG (default 0)")
    g.add_argument("--min-runs", type=number(int, "runs a step needs to be drawn", least=1), default=1, help="draw only steps that at least this many runs of a group reach (default 1)")
    g.add_argument("--max-steps", type=number(int, "the budget in env steps", least=1), default=None, metavar="N",
                   help="compare at a budget: only values logged at or before N env steps; a run's final score is its last one within N (default: all)")
    g.add_argument("--out", type=out_argument, default=None, help="output folder (default runs/plots/<date>_<time>)")
    return p


def metric_file_stem(metric: str) -> str:
    """``eval/success_rate`` -> ``eval_success_rate``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") or "metric"


def steps_label(x: float, _pos=None) -> str:
    """Tick text for env steps: 500, 10k, 2.5k, 1.2M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.4g}{suffix}"
    return f"{x:.4g}"


def group_runs(runs: list, key: str = "algorithm") -> dict[str, list]:
    """Label -> runs, by the run's tag ``key`` (else its param ``key``); ``env/<value>`` when the runs
    span several envs and ``key`` is not env itself. Runs lacking the key form the group ``<key>=?``."""
    if not any(key in r.data.tags or key in r.data.params for r in runs):
        present = sorted({k for r in runs for k in r.data.tags if not k.startswith("mlflow.")})
        raise UserError(f"--group-by {key}: no selected run has this tag or param; their tags: {', '.join(present)}.")
    several_envs = len({r.data.tags.get("env") for r in runs}) > 1 and key != "env"
    groups: dict[str, list] = {}
    for run in runs:
        value = run.data.tags.get(key, run.data.params.get(key, f"{key}=?"))
        label = f"{run.data.tags.get('env', '?')}/{value}" if several_envs else value
        groups.setdefault(label, []).append(run)
    return dict(sorted(groups.items()))


def choose_metrics(runs: list, asked: list[str] | None) -> list[str]:
    """The metrics to plot: those asked (each held by some selected run) or the default one."""
    held = {k for r in runs for k in r.data.metrics}
    if asked:
        missing = [m for m in asked if m not in held]
        if missing:
            raise UserError(f"no selected run has the metric {', '.join(missing)}; they have: {', '.join(sorted(held)) or 'no metrics'}.")
        return list(dict.fromkeys(asked))
    for metric in DEFAULT_METRICS:
        if metric in held:
            return [metric]
    if not held:
        raise UserError(f"the selected runs have logged no metrics (neither {' nor '.join(DEFAULT_METRICS)}); select runs that trained.")
    raise UserError(f"the selected runs have neither {' nor '.join(DEFAULT_METRICS)}; give --metric, one of: {', '.join(sorted(held))}.")


def curves_for(client, groups: dict[str, list], metric: str, agg: str = "mean", n_boot: int = 2000, seed: int = 0,
               min_runs: int = 1, say: Callable[[str], None] = print, max_steps: int | None = None) -> list[Curve]:
    """One :class:`Curve` per group for ``metric``, from the values logged at or before ``max_steps`` env steps
    (all when None); runs without the metric there are left out (and named)."""
    total, done, curves, without = sum(len(g) for g in groups.values()), 0, [], []
    for label, runs in groups.items():
        histories = []
        for run in runs:
            steps, values = metric_history(client, run.info.run_id, metric)
            if max_steps is not None:
                steps, values = steps[steps <= max_steps], values[steps <= max_steps]
            if len(steps):
                histories.append((steps, values))
            else:
                without.append(run.info.run_name or run.info.run_id)
            done += 1
            if total > PROGRESS_EVERY and (done % PROGRESS_EVERY == 0 or done == total):
                say(f"  {metric}: {done}/{total} runs read")
        if histories:
            curves.append(aggregate_runs(histories, label, agg, n_boot, seed, min_runs))
    curves = [c for c in curves if len(c.steps)]
    if without and curves:  # with no curve at all the caller's error says it
        within = f" at or before {steps_label(max_steps)} steps" if max_steps is not None else ""
        say(f"note: {len(without)} run(s) without {metric}{within} left out: {', '.join(without[:8])}{' ...' if len(without) > 8 else ''}")
    return curves


def group_colors(labels) -> dict[str, tuple]:
    """A tab10 colour per group label, in the given order: passed to every figure, a group keeps its colour
    in all of them even where another group has no curve."""
    colors = pyplot().get_cmap("tab10").colors
    return {label: colors[i % len(colors)] for i, label in enumerate(labels)}


def plot_curves(curves: list[Curve], metric: str, title: str = "", agg: str = "mean", n_boot: int = 2000,
                colors: dict[str, tuple] | None = None):
    """A matplotlib Figure: one line and one filled band per curve, legend ``<label> (<n> runs)``; ``colors``
    maps labels to colours (default: :func:`group_colors` of these curves)."""
    from matplotlib.ticker import FuncFormatter

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=150, layout="constrained")
    colors = colors or group_colors(c.label for c in curves)
    for c in curves:
        color = colors[c.label]
        runs = f"{c.n_runs} run" + ("s" if c.n_runs != 1 else "")
        ax.plot(c.steps, c.value, color=color, lw=2, marker="o" if len(c.steps) <= 40 else None, ms=3.5, label=f"{c.label} ({runs})")
        ax.fill_between(c.steps, c.low, c.high, color=color, alpha=0.2, lw=0)
    ax.xaxis.set_major_formatter(FuncFormatter(steps_label))
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric)
    if metric.endswith("success_rate"):
        ax.set_ylim(-0.03, 1.03)
    what = "IQM" if agg == "iqm" else "mean"
    ax.set_title(f"{title + ': ' if title else ''}{metric}\n{what} over runs, band: 95% bootstrap CI (rliable, {n_boot} resamples)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def write_csv(curves: list[Curve], path: Path) -> None:
    """Rows ``group, runs_in_group, step, value, ci_low, ci_high, runs_at_step``, one per grid step."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["group", "runs_in_group", "step", "value", "ci_low", "ci_high", "runs_at_step"])
        for c in curves:
            for row in zip(c.steps, c.value, c.low, c.high, c.count, strict=True):
                w.writerow([c.label, c.n_runs, int(row[0]), f"{row[1]:.6g}", f"{row[2]:.6g}", f"{row[3]:.6g}", int(row[4])])


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    note = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    client, runs = select_from_args(args)
    groups = group_runs(runs, args.group_by)
    metrics = choose_metrics(runs, args.metric)
    scope = sorted({r.data.tags.get("env", "") for r in runs} - {""})
    say(f"{len(runs)} run(s){' of ' + ', '.join(scope) if scope else ''}: " + ", ".join(f"{k} {len(v)}" for k, v in groups.items()))
    budget = f" within {steps_label(args.max_steps)} steps" if args.max_steps is not None else ""
    with output_folder(args.out, "plots") as out:
        figures = []
        for metric in metrics:
            curves = curves_for(client, groups, metric, args.agg, args.n_boot, args.seed, args.min_runs, note, args.max_steps)
            if not curves:
                raise UserError(f"no selected run logged {metric}{budget} at {args.min_runs} or more runs per group.")
            finals = "; ".join(f"{c.label} {c.value[-1]:.3g} at {steps_label(c.steps[-1])}" for c in curves)
            say(f"{metric} ({args.agg}, last step): {finals}")
            scores = {c.label: c.finals for c in curves}
            summary, pairs = report(scores, args.n_boot, args.seed)
            for line in report_lines(scores, summary, pairs, f"final {metric} per run{budget}", args.n_boot):
                say(line)
            figures.append((metric, curves, scores, summary, pairs))
        colors = group_colors(groups)
        for metric, curves, scores, summary, pairs in figures:
            stem = metric_file_stem(metric)
            save_figure(plot_curves(curves, metric, ", ".join(scope), args.agg, args.n_boot, colors), out / f"{stem}.png")
            save_figure(plot_final(scores, summary, metric, ", ".join(scope), colors, args.n_boot, args.seed),
                        out / f"{stem}_final.png")
            write_csv(curves, out / f"{stem}.csv")
            write_final_csv(summary, pairs, scores, out / f"{stem}_final.csv")
            for suffix in (".png", ".csv", "_final.png", "_final.csv"):
                say(str(out / f"{stem}{suffix}"))
    return 0


__all__ = ["choose_metrics", "curves_for", "group_colors", "group_runs", "main", "metric_file_stem", "plot_curves", "steps_label", "write_csv"]
