"""``./run_testing.sh``: the env x algorithm regression matrix (function or performance tier).

    ./run_testing.sh -t function -p 2
    ./run_testing.sh -t performance -f FetchReach -p 2
    ./run_testing.sh -g '(0,1)' -p 6 -m 2500 -s 15 -t performance
    ./run_testing.sh -t function -f Pendulum/sac -O algorithm.learning_rate=0.001

Writes ``runs/testing/<tier>_<date>_<time>/``: ``test_cmds.txt`` (every command), ``logs/``, ``runs/`` (in the
function tier only the failed pairs' run dirs stay, unless ``-k``), ``verdict.json``; prints one line per
finished job and a summary table. Exit status 0 only if every job (function) or bar (performance) passed;
130 after Ctrl-C, which stops every job it started.

Function tier: every pair is first built at the agent factory; a pair that cannot be built, or whose
refusal differs from the expected refusals (``-r``, default ``conf/refused_pairs.yaml``), is listed with its
reason and fails the tier (the pairs that build still run). Each job is still its own process, but forked from
a server that has the imports done (``hydrarl.launchers.forkserver``, log in ``logs/fork_server.log``), and the
jobs start longest first. Performance tier: a bar whose pair cannot be built fails before any of its runs.

Every option is checked before any job starts: a bad value (``-p 0``, ``-s -1``, an output folder that
cannot be written) is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.analysis.tables import text_table
from hydrarl.cli_args import ArgumentParser, number
from hydrarl.errors import UserError, exit_on_user_error, writable_dir
from hydrarl.launchers.forkserver import ForkServer
from hydrarl.launchers.matrix import (
    BARS_DIR,
    bar_verdicts,
    function_jobs,
    hopeless,
    load_bars,
    performance_jobs,
    select_pairs,
)
from hydrarl.launchers.pairs import REFUSALS_FILE, VALID
from hydrarl.launchers.scheduler import Scheduler
from hydrarl.paths import tool_output_dir


def parse_gpus(text: str) -> list[int]:
    """``0``, ``(0,1)``, ``0,1`` -> GPU indices; a UserError for anything else (``-1``, ``gpu``)."""
    if not re.fullmatch(r"\s*\(?\s*\d+(\s*,\s*\d+)*\s*,?\s*\)?\s*", text):
        raise UserError(f"-g {text!r} is not allowed: give GPU indices (integers >= 0) such as 0, 0,1 or '(0,1)'")
    return [int(i) for i in re.findall(r"\d+", text)]


def override(text: str) -> str:
    """An argparse type: one Hydra override for every job (no sweep, no hydra.* key: the tier sets the run dirs)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        (parsed,) = OverridesParser.create().parse_overrides([text])
    except HydraException as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an override such as algorithm.learning_rate=0.001 "
                                         f"({str(exc).strip().splitlines()[0]})") from None
    if parsed.is_sweep_override() or parsed.get_key_element().lstrip("+~").startswith("hydra."):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: one value of a config key (no sweep, no hydra.* key)")
    return text


# Function tier: relative seconds of a pair's job, measured (2 jobs on 2 cores): PenguinPi's simulators
# (one per env copy, 3 steps/s) ~4x a vector env's, CarRacing's frames ~3x, the Bumps scenes and MuJoCo
# bodies ~1.5x; controllers and ARS take no gradient step. Jobs start longest first, so that no long one
# starts last and runs alone (alphabetically, PenguinPi came last). The JAX agents (sbx_*) import JAX and compile
# their updates: ~3x.
SLOW_ENVS = {"PenguinPi": 4.0, "CarRacing": 3.0, "Bump": 1.5, "Ant": 1.5, "Cassie": 1.5, "HalfCheetah": 1.3, "Fetch": 1.3}
ALGORITHM_WEIGHTS = {"random": 0.5, "constant": 0.5, "pid": 0.5, "human": 0.5, "bumps_oracle": 0.5, "ars": 0.5, "sbx_": 3.0}


def longest_first(jobs: list) -> list:
    """The function tier's jobs (named ``<Env>/<algo>``) in launch order: expected longest first."""
    def cost(job) -> float:
        env, _, algorithm = job.name.partition("/")
        weight = next((w for prefix, w in SLOW_ENVS.items() if env.startswith(prefix)), 1.0)
        return weight * next((w for prefix, w in ALGORITHM_WEIGHTS.items() if algorithm.startswith(prefix)), 1.0)
    return sorted(jobs, key=cost, reverse=True)


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="./run_testing.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-g", default="0", help="GPU ids, e.g. 0 or '(0,1)' (default 0; CPU when there is no nvidia-smi)")
    p.add_argument("-p", type=number(int, "the most jobs at once", least=1), default=6, help="most jobs at once, >= 1 (default 6)")
    p.add_argument("-m", type=number(int, "MB of free GPU memory a job needs to start", least=0), default=2500,
                   help="start a job only on a GPU with this many MB free, >= 0 (default 2500)")
    p.add_argument("-s", type=number(float, "seconds between launches", least=0), default=15, help="seconds between launches, >= 0 (default 15)")
    p.add_argument("-t", choices=["function", "performance"], default="performance", help="tier (default performance)")
    p.add_argument("-f", default=None, help="only <Env>/<algo> names containing this text")
    p.add_argument("-o", type=Path, default=None, help="output directory (default runs/testing/<tier>_<time>)")
    p.add_argument("-k", action="store_true", help="function tier: keep the run dirs of passed pairs too (5 GB for all)")
    p.add_argument("-c", action="store_true",
                   help="function tier: check every pair at the agent factory but train a covering set only: each "
                        "algorithm on one env of each kind it acts in, each env at least once (make test)")
    p.add_argument("-b", type=Path, default=BARS_DIR, help="directory of performance bars (default conf/performance)")
    p.add_argument("-r", type=Path, default=REFUSALS_FILE,
                   help="function tier: the expected refused pairs (default conf/refused_pairs.yaml)")
    p.add_argument("-O", type=override, action="append", default=[], metavar="OVERRIDE",
                   help="a config override added to every job, after the tier's own (repeatable), "
                        "e.g. -O algorithm.learning_rate=0.001")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    gpus = parse_gpus(args.g)
    if args.c and args.t != "function":
        raise UserError("-c is an option of the function tier (-t function): the performance tier runs every bar it selects")
    if args.t == "performance" and not args.b.is_dir():
        raise UserError(f"-b {args.b}: not a folder of performance bars (<Env>/<algo>.yaml files); the default is {BARS_DIR}")
    # A filter that selects nothing is refused before the output folder is made.
    selected = select_pairs(args.f) if args.t == "function" else []
    bars = load_bars(args.f, args.b) if args.t == "performance" else []
    out = writable_dir(args.o or tool_output_dir("testing", f"{args.t}_"), "-o")
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    overrides = tuple(args.O)
    jobs, problems, checks, cannot_build = [], [], {}, {}
    server = ForkServer(out / "logs" / "fork_server.log") if args.t == "function" else None  # its imports overlap the checks
    interrupted = False
    try:
        if args.t == "function":
            jobs, problems, checks = function_jobs(out, selected, say, keep_runs=args.k, workers=args.p, overrides=overrides,
                                                   refusals=args.r, cover=args.c)
        else:
            jobs, cannot_build = performance_jobs(out, bars, say, workers=args.p, overrides=overrides)
        (out / "test_cmds.txt").write_text("".join(" ".join(j.command) + "\n" for j in jobs))
        say(f"{len(jobs)} job(s), at most {args.p} at once, {args.s:g} s apart; commands in {out / 'test_cmds.txt'}")
        if jobs:
            scheduler = Scheduler(max_procs=args.p, spacing=args.s, gpus=gpus, min_free_mb=args.m, say=say)
            bar_of = {b.name: b for b in bars}
            skip = (lambda job, all_jobs: hopeless(bar_of[job.meta["bar"]], all_jobs)) if bars else None
            if server is not None and not server.wait_ready():
                say("fork server not available: each job starts its own interpreter")
            scheduler.run(longest_first(jobs) if args.t == "function" else jobs, skip=skip)  # reports keep the order of jobs
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if server is not None:
            server.close()
    if args.t == "function":
        verdict = {"tier": "function", "passed": all(j.ok for j in jobs) and not problems and not interrupted,
                   "pair_problems": problems,
                   "pairs_not_built": {f"{e}/{a}": {"outcome": c.outcome, "reason": c.reason}
                                       for (e, a), c in checks.items() if c.outcome != VALID},
                   "jobs": [{"name": j.name, "ok": j.ok, "returncode": j.returncode, "error": j.error, "log": str(j.log)} for j in jobs]}
        rows = [[*line.split(": ", 1)[:1], "FAIL", line.split(": ", 1)[-1], "-"] for line in problems]
        rows += [[j.name, "pass" if j.ok else "FAIL", j.error or "", f"{(j.ended or 0) - (j.started or 0):.0f}"] for j in jobs]
        say("\n" + text_table(["pair", "result", "error", "seconds"], rows))
        if problems:
            say(f"FAIL {len(problems)} problem(s) at the agent factory (listed first). Fix the config; when a refusal "
                f"changed on purpose, edit {args.r}")
    else:
        verdicts = bar_verdicts(jobs, bars, cannot_build)
        verdict = {"tier": "performance", "passed": all(v["passed"] for v in verdicts) and not interrupted, "bars": verdicts}
        rows = [[v["bar"], "pass" if v["passed"] else "FAIL", f"{v['passed_runs']}/{v['needed_runs']}",
                 "-" if v["best_value_reached"] is None else f"{v['best_value_reached']:.3g}", f"{v['value_needed']:g}"] for v in verdicts]
        say("\n" + text_table(["bar", "result", "runs passed/needed", "best value reached", "value needed"], rows))
        for v in verdicts:
            if v["cannot_build"]:
                say(f"FAIL {v['bar']}: its pair cannot be built, no run started: {v['cannot_build']}")
            elif not v["passed"]:
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
