"""Benchmark helper: the ``measured:`` entries of a performance bar from finished runs.

Reads each run's per-epoch history (``checkpoints/last/trainer_state.json``: the runs may have been
made without the bar's early stop, so their own TrialResult need not judge by the bar) and judges
it with the one early-stop rule (``hydrarl.training.stopping``, through
``hydrarl.launchers.matrix.curve_verdict``) against the bar's metric, value, ``last_n`` and
``max_steps``; prints one YAML flow line per run, ready to paste under ``provenance.measured``, and
how many runs passed.

    python benchmarks/bar_provenance.py conf/performance/Pendulum-p/sac.yaml runs/bench/Pendulum-p_sac_seed*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from hydrarl.launchers.matrix import Bar, curve_verdict
from hydrarl.training.checkpoint import STATE
from hydrarl.training.stopping import history_points


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bar", type=Path, help="conf/performance/<Env>/<algo>.yaml")
    p.add_argument("runs", nargs="+", type=Path, help="run directories")
    args = p.parse_args(argv)
    bar = Bar.load(args.bar.resolve(), args.bar.resolve().parents[1])
    passed = 0
    for run in args.runs:
        history = json.loads((run / "checkpoints" / "last" / STATE).read_text())["history"]
        curve = history_points(history, bar.metric)
        verdict = curve_verdict(curve, bar)
        passed += verdict["passed"]
        seed = OmegaConf.load(run / "config.yaml").seed
        points = [[steps, round(float(value), 3)] for steps, value in curve]
        best = None if verdict["best_mean"] is None else round(verdict["best_mean"], 3)
        print(f"    - {{seed: {seed}, passed: {str(verdict['passed']).lower()}, met_at_steps: {verdict['steps'] or 'null'}, "
              f"best_mean_last_{bar.last_n}: {best}, steps_and_eval: {json.dumps(points, separators=(',', ':'))}}}")
    print(f"# {passed} of {len(args.runs)} runs pass: {bar.rule}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
