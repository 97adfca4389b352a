"""Benchmark: raw env steps per second in one process, for env configs of the tree.

Each env is built by the project's factory (``make_env``: wrappers and Monitor included, as a training
copy), reset with a seed and stepped with uniformly random actions from its action space (resetting
whenever an episode ends) for ``--steps`` steps; the best of ``--repeats`` timings is reported (the
machine is shared, so the best is the least disturbed). No agent, no learning.

    python benchmarks/env_speed.py Cassie Bumps BumpTarget Pendulum-v --steps 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time

import hydrarl  # noqa: F401  (privacy and rendering defaults)
from hydrarl.config.compose import compose
from hydrarl.envs.factory import make_env


def steps_per_second(env_name: str, steps: int, seed: int = 0) -> tuple[float, int]:
    """(env steps per second, episodes ended) over ``steps`` random-action steps of one env copy."""
    env = make_env(compose([f"env={env_name}", "algorithm=random"]).env)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    episodes = 0
    started = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            episodes += 1
            env.reset()
    seconds = time.perf_counter() - started
    env.close()
    return steps / seconds, episodes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("envs", nargs="+", help="env config names, e.g. Cassie Bumps")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(f"| env | random-action steps/s (best of {args.repeats}) | episodes per {args.steps} steps |")
    print("|---|---:|---:|")
    for name in args.envs:
        results = [steps_per_second(name, args.steps, seed) for seed in range(args.repeats)]
        best = max(r[0] for r in results)
        print(f"| {name} | {best:,.0f} | {results[0][1]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
