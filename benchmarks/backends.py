"""Benchmark: updates per second and env steps per second of the torch agents (SB3, sb3-contrib) against the JAX
agents (sbx-rl) with the same configs, side by side in one invocation.

For each env x algorithm, ``--repeats`` pairs of measurements, torch and JAX alternating (so that a slower spell of
the machine hits both). Each measurement is its own process with one compute thread (``set_up_backends(1)``, as
``trainer.torch_threads=1`` gives a run): the agent built from ``conf/`` as train.py builds it, ``learn`` until it
has updated a few times (JAX compiles then), then ``learn`` timed over ``--steps`` env steps (four rollouts for PPO).
Updates: gradient steps (SAC, TQC: one per env step; PPO: minibatches x epochs per rollout).

    python benchmarks/backends.py --repeats 3 --out runs/benchmarks/backends.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

# (env, label) -> (torch algorithm, JAX algorithm). FetchReach trains with HER; sbx's PPO has no dict observations.
PAIRS = {
    ("FetchReach", "sac"): ("sac_her", "sbx_sac_her"),
    ("FetchReach", "tqc"): ("tqc_her", "sbx_tqc_her"),
    ("Pendulum", "sac"): ("sac", "sbx_sac"),
    ("Pendulum", "tqc"): ("tqc", "sbx_tqc"),
    ("Pendulum", "ppo"): ("ppo", "sbx_ppo"),
    ("Cassie", "sac"): ("sac", "sbx_sac"),
    ("Cassie", "tqc"): ("tqc", "sbx_tqc"),
    ("Cassie", "ppo"): ("ppo", "sbx_ppo"),
}

MEASURE = r'''
import json, math, sys, time
from hydrarl.agents.factory import build_agent
from hydrarl.config.compose import compose
from hydrarl.envs.factory import make_vec_env
from hydrarl.training.backends import set_up_backends

env_name, algorithm, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
set_up_backends(1, "cpu")
cfg = compose([f"env={env_name}", f"algorithm={algorithm}", "seed=0", *sys.argv[4:]])
a = cfg.algorithm
on_policy = "n_steps" in a and "buffer_size" not in a
if not on_policy:
    cfg.algorithm.learning_starts = 200
env = make_vec_env(cfg.env, 0)
model = build_agent(cfg.algorithm, env, 0, "cpu", name=algorithm, env_name=env_name)
warm = a.n_steps if on_policy else 300  # one rollout and its update / 100 updates: JAX has compiled them
model.learn(warm)
if on_policy:
    steps = 4 * a.n_steps * env.num_envs  # n_steps is per env copy
    per_rollout = a.n_epochs * math.ceil(a.n_steps * env.num_envs / a.batch_size)
before_steps, before_updates = model.num_timesteps, model._n_updates
start = time.perf_counter()
model.learn(steps, reset_num_timesteps=False)
seconds = time.perf_counter() - start
done = model.num_timesteps - before_steps
updates = done // (a.n_steps * env.num_envs) * per_rollout if on_policy else model._n_updates - before_updates
print(json.dumps({"env_steps_per_s": done / seconds, "updates_per_s": updates / seconds, "seconds": seconds}))
env.close()
'''


def measure(env: str, algorithm: str, steps: int, overrides: tuple[str, ...] = ()) -> dict:
    """One measurement in a fresh process (the last line of its output); ``overrides`` are config overrides."""
    done = subprocess.run([sys.executable, "-c", MEASURE, env, algorithm, str(steps), *overrides],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{env}/{algorithm} {' '.join(overrides)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="measurement pairs per env x algorithm (default 3)")
    p.add_argument("--steps", type=int, default=1500, help="timed env steps of an off-policy agent (default 1500)")
    p.add_argument("--only", default="", help="only pairs whose '<env>/<label>' contains this text")
    p.add_argument("--out", type=Path, help="also write every measurement to this JSON file")
    args = p.parse_args()
    rows = []
    for (env, label), (torch_algo, jax_algo) in PAIRS.items():
        if args.only not in f"{env}/{label}":
            continue
        runs = {"torch": [], "jax": []}
        for repeat in range(args.repeats):
            for backend, algorithm in (("torch", torch_algo), ("jax", jax_algo)):
                runs[backend].append(measure(env, algorithm, args.steps))
                print(f"{env}/{label} {backend} #{repeat + 1}: {runs[backend][-1]}", file=sys.stderr, flush=True)
        rows.append({"env": env, "algorithm": label, "torch_algorithm": torch_algo, "jax_algorithm": jax_algo, **runs})
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))
    print("| env | algorithm | updates/s torch | updates/s JAX | ratio | env steps/s torch | env steps/s JAX | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [r["env"], f"{r['torch_algorithm']} / {r['jax_algorithm']}"]
        for key in ("updates_per_s", "env_steps_per_s"):
            t, j = [x[key] for x in r["torch"]], [x[key] for x in r["jax"]]
            cells += [spread(t), spread(j), f"{statistics.median(j) / statistics.median(t):.2f}×"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
