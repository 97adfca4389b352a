"""Benchmark: on-policy training with one env copy in the training process against copies in subprocesses
(``env.n_envs=N env.vec_env=subproc``), side by side in one invocation.

For each env x algorithm, ``--repeats`` rounds, the settings alternating within a round. Each measurement is
``backends.measure``: its own process with one compute thread, the agent built from ``conf/`` as train.py builds it,
one rollout and update to warm up, then ``learn`` timed over four rollouts (``n_steps`` is per env copy, so N copies
collect N times as many steps per update). Env steps/s counts collection and the updates, as training does.

    python benchmarks/vec_envs.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys

from backends import measure, spread

CASES = [("Pendulum", "ppo"), ("LunarLander", "ppo"), ("Cassie", "ppo_cassie"), ("Pendulum", "sbx_ppo"),
         ("Cassie", "sbx_ppo")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--copies", type=int, nargs="+", default=[2], help="subprocess copies to set against one (default 2)")
    p.add_argument("--only", default="", help="only cases whose '<env>/<algorithm>' contains this text")
    args = p.parse_args()
    settings = {"1 copy": ("env.n_envs=1", "env.vec_env=dummy")}
    settings |= {f"{n} subprocesses": (f"env.n_envs={n}", "env.vec_env=subproc") for n in args.copies}
    print("| env | algorithm | " + " | ".join(f"{s}: env steps/s" for s in settings) + " | "
          + " | ".join(f"{s} / 1 copy" for s in list(settings)[1:]) + " |")
    print("|---|---|" + "---:|" * (2 * len(settings) - 1), flush=True)
    for env, algorithm in CASES:
        if args.only not in f"{env}/{algorithm}":
            continue
        rates: dict[str, list[float]] = {s: [] for s in settings}
        for repeat in range(args.repeats):
            for name, overrides in settings.items():
                rates[name].append(measure(env, algorithm, 0, overrides)["env_steps_per_s"])
                print(f"{env}/{algorithm} {name} #{repeat + 1}: {rates[name][-1]:.0f}", file=sys.stderr, flush=True)
        one = statistics.median(rates["1 copy"])
        cells = [spread(r) for r in rates.values()] + [f"{statistics.median(r) / one:.2f}×" for r in list(rates.values())[1:]]
        print(f"| {env} | {algorithm} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
