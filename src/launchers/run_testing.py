"""``./run_testing.sh``: the env x algorithm regression matrix (function or performance tier).

    ./run_testing.sh -t function -p 2
    ./run_testing.sh -t performance -f FetchReach -p 2
    ./run_testing.sh -g '(0,1)' -p 6 -m 2500 -s 15 -t performance

Writes ``runs/testing/<tier>_<date>_<time>/``: ``test_cmds.txt`` (every command), ``logs/``, ``runs/`` (in the
function tier only the failed pairs' run dirs stay, unless ``-k``), ``verdict.json``; prints one line per
finished job and a summary table. Exit status 0 only if every job (function) or bar (performance) passed;
130 after Ctrl-C, which stops every job it started.

Function tier: each job is still its own process, but forked from a server that has the imports done
(``hydrarl.launchers.forkserver``, log in ``logs/fork_server.log``), and the jobs start longest first.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.analysis.tables import text_table
from hydrarl.errors import UserError, exit_on_user_error
from hydrarl.launchers.forkserver import ForkServer
from hydrarl.launchers.matrix import BARS_DIR, bar_verdicts, function_jobs, hopeless, performance_jobs
from hydrarl.launchers.scheduler import Scheduler
from hydrarl.paths import tool_output_dir


def parse_gpus(text: str) -> list[int]:
    """``0``, ``(0,1)``, ``0,1`` -> GPU indices."""
    ids = re.findall(r"\d+", text)
    if not ids:
        raise UserError(f"-g {text!r}: give GPU indices such as 0 or '(0,1)'")
    return [int(i) for i in ids]


# Function tier: relative seconds of a pair's job, measured (2 jobs on 2 cores): PenguinPi's simulators
# (one per env copy, 3 steps/s) ~4x a vector env's, CarRacing's frames ~3x, the Bumps scenes and MuJoCo
# bodies ~1.5x; controllers and ARS take no gradient step. Jobs start longest first, so that no long one
# starts last and runs alone (alphabetically, PenguinPi came last).
SLOW_ENVS = {"PenguinPi": 4.0, "CarRacing": 3.0, "Bump": 1.5, "Ant": 1.5, "Cassie": 1.5, "HalfCheetah": 1.3, "Fetch": 1.3}
QUICK_ALGORITHMS = {"random": 0.5, "constant": 0.5, "pid": 0.5, "human": 0.5, "bumps_oracle": 0.5, "ars": 0.5}


def longest_first(jobs: list) -> list:
    """The function tier's jobs (named ``<Env>/<algo>``) in launch order: expected longest first."""
    def cost(job) -> float:
        env, _, algorithm = job.name.partition("/")
        weight = next((w for prefix, w in SLOW_ENVS.items() if env.startswith(prefix)), 1.0)
        return weight * QUICK_ALGORITHMS.get(algorithm, 1.0)
    return sorted(jobs, key=cost, reverse=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_testing.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-g", default="0", help="GPU ids, e.g. 0 or '(0,1)' (default 0; CPU when there is no nvidia-smi)")
    p.add_argument("-p", type=int, default=6, help="most jobs at once (default 6)")
    p.add_argument("-m", type=int, default=2500, help="start a job only on a GPU with this many MB free (default 2500)")
    p.add_argument("-s", type=float, default=15, help="seconds between launches (default 15)")
    p.add_argument("-t", choices=["function", "performance"], default="performance", help="tier (default performance)")
    p.add_argument("-f", default=None, help="only <Env>/<algo> names containing this text")
    p.add_argument("-o", type=Path, default=None, help="output directory (default runs/testing/<tier>_<time>)")
    p.add_argument("-k", action="store_true", help="function tier: keep the run dirs of passed pairs too (5 GB for all)")
    p.add_argument("-b", type=Path, default=BARS_DIR, help="directory of performance bars (default conf/performance)")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.o or tool_output_dir("testing", f"{args.t}_")
    out.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    gpus = parse_gpus(args.g)
    if args.t == "function":
        server = ForkServer(out / "logs" / "fork_server.log")  # its imports overlap the choice of pairs
        jobs, bars = function_jobs(out, args.f, say, keep_runs=args.k, workers=args.p), []
        if not jobs:
            raise UserError(f"no valid env x algorithm pair matches -f {args.f!r}")
    else:
        jobs, bars = performance_jobs(out, args.f, say, args.b)
    (out / "test_cmds.txt").write_text("".join(" ".join(j.command) + "\n" for j in jobs))
    say(f"{len(jobs)} job(s), at most {args.p} at once, {args.s:g} s apart; commands in {out / 'test_cmds.txt'}")
    scheduler = Scheduler(max_procs=args.p, spacing=args.s, gpus=gpus, min_free_mb=args.m, say=say)
    bar_of = {b.name: b for b in bars}
    skip = (lambda job, all_jobs: hopeless(bar_of[job.meta["bar"]], all_jobs)) if bars else None
    interrupted = False
    try:
        if args.t == "function" and not server.wait_ready():
            say("fork server not available: each job starts its own interpreter")
        scheduler.run(longest_first(jobs) if args.t == "function" else jobs, skip=skip)  # reports keep the order of jobs
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if args.t == "function":
            server.close()
    if args.t == "function":
        verdict = {"tier": "function", "passed": all(j.ok for j in jobs) and not interrupted,
                   "jobs": [{"name": j.name, "ok": j.ok, "returncode": j.returncode, "error": j.error, "log": str(j.log)} for j in jobs]}
        rows = [[j.name, "pass" if j.ok else "FAIL", j.error or "", f"{(j.ended or 0) - (j.started or 0):.0f}"] for j in jobs]
        say("\n" + text_table(["pair", "result", "error", "seconds"], rows))
    else:
        verdicts = bar_verdicts(jobs, bars)
        verdict = {"tier": "performance", "passed": all(v["passed"] for v in verdicts) and not interrupted, "bars": verdicts}
        rows = [[v["bar"], "pass" if v["passed"] else "FAIL", f"{v['passed_runs']}/{v['needed_runs']}",
                 "-" if v["best_value_reached"] is None else f"{v['best_value_reached']:.3g}", f"{v['value_needed']:g}"] for v in verdicts]
        say("\n" + text_table(["bar", "result", "runs passed/needed", "best value reached", "value needed"], rows))
        for v in verdicts:
            if not v["passed"]:
                per_run = [f"{r['best_mean']:.3g}" for r in v["runs"] if r.get("best_mean") is not None]
                skipped = sum(bool(r.get("skipped")) for r in v["runs"])
                reached = (", ".join(per_run) or "nothing") + (f" ({skipped} run(s) skipped)" if skipped else "")
                say(f"FAIL {v['bar']}: reached {reached}, needed {v['value_needed']:g} ({v['rule']}); "
                    f"{v['passed_runs']} run(s) passed, {v['needed_runs']} needed")
    verdict.update(interrupted=interrupted, output=str(out))
    (out / "verdict.json").write_text(json.dumps(verdict, indent=1))
    say(f"{'PASSED' if verdict['passed'] else 'FAILED'}: verdict in {out / 'verdict.json'}")
    if interrupted:
        return 130
    return 0 if verdict["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
