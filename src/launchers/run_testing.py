"""``./run_testing.sh``: the env x algorithm regression matrix (function or performance tier).

    ./run_testing.sh -t function -p 2
    ./run_testing.sh -t performance -f FetchReach -p 2
    ./run_testing.sh -g '(0,1)' -p 6 -m 2500 -s 15 -t performance

Writes ``runs/testing/<tier>_<date>_<time>/``: ``test_cmds.txt`` (every command), ``logs/``, ``runs/`` (in the
function tier only the failed pairs' run dirs stay, unless ``-k``), ``verdict.json``; prints one line per
finished job and a summary table. Exit status 0 only if every job (function) or bar (performance) passed;
130 after Ctrl-C, which stops every job it started.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.errors import USER_ERROR_EXIT_CODE, UserError
from hydrarl.launchers.matrix import BARS_DIR, bar_verdicts, function_jobs, hopeless, performance_jobs
from hydrarl.launchers.scheduler import Scheduler
from hydrarl.paths import PROJECT_ROOT


def parse_gpus(text: str) -> list[int]:
    """``0``, ``(0,1)``, ``0,1`` -> GPU indices."""
    ids = re.findall(r"\d+", text)
    if not ids:
        raise UserError(f"-g {text!r}: give GPU indices such as 0 or '(0,1)'")
    return [int(i) for i in ids]


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


def summary(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda r: " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.o or PROJECT_ROOT / "runs" / "testing" / f"{args.t}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    out.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        gpus = parse_gpus(args.g)
        if args.t == "function":
            jobs, bars = function_jobs(out, args.f, say, keep_runs=args.k), []
            if not jobs:
                raise UserError(f"no valid env x algorithm pair matches -f {args.f!r}")
        else:
            jobs, bars = performance_jobs(out, args.f, say, args.b)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    (out / "test_cmds.txt").write_text("".join(" && ".join(" ".join(c) for c in j.commands) + "\n" for j in jobs))
    say(f"{len(jobs)} job(s), at most {args.p} at once, {args.s:g} s apart; commands in {out / 'test_cmds.txt'}")
    scheduler = Scheduler(max_procs=args.p, spacing=args.s, gpus=gpus, min_free_mb=args.m, say=say)
    bar_of = {b.name: b for b in bars}
    skip = (lambda job, all_jobs: hopeless(bar_of[job.meta["bar"]], all_jobs)) if bars else None
    interrupted = False
    try:
        scheduler.run(jobs, skip=skip)
    except KeyboardInterrupt:
        interrupted = True
    if args.t == "function":
        verdict = {"tier": "function", "passed": all(j.ok for j in jobs) and not interrupted,
                   "jobs": [{"name": j.name, "ok": j.ok, "returncode": j.returncode, "error": j.error, "log": str(j.log)} for j in jobs]}
        rows = [[j.name, "pass" if j.ok else "FAIL", j.error or "", f"{(j.ended or 0) - (j.started or 0):.0f}"] for j in jobs]
        say("\n" + summary(rows, ["pair", "result", "error", "seconds"]))
    else:
        verdicts = bar_verdicts(jobs, bars)
        verdict = {"tier": "performance", "passed": all(v["passed"] for v in verdicts) and not interrupted, "bars": verdicts}
        rows = [[v["bar"], "pass" if v["passed"] else "FAIL", f"{v['passed_runs']}/{v['needed_runs']}",
                 "-" if v["best_value_reached"] is None else f"{v['best_value_reached']:.3g}", f"{v['value_needed']:g}"] for v in verdicts]
        say("\n" + summary(rows, ["bar", "result", "runs passed/needed", "best value reached", "value needed"]))
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
