"""Benchmark: where one FetchReach training step's time goes (sac_her), for the torch and the JAX agent, with SB3's HER
buffer and with ours, side by side in one invocation.

Each measurement is a real run (``hydrarl.training.train.run``: the env config, VecNormalize, our callbacks, one
thread) of two epochs of ``--steps`` env steps, in its own process; the second is measured (JAX compiles during the
first): first without the profiler (the Trainer's steps per second), then the same again under cProfile, whose
cumulative times are split into the parts of a step:

- env step: ``VecEnv.step`` (MuJoCo, the wrappers, VecNormalize);
- HER sampling: the replay buffer's ``sample`` (relabelling, normalising, tensors);
- update: the agent's ``train`` less its sampling (gradient steps, target updates);
- prediction: choosing the action to take (``_sample_action``);
- callbacks: our Trainer's hooks called at every step;
- other: the rest of ``learn`` (storing the transition, bookkeeping).

The profiler slows Python calls more than compiled code, so its milliseconds are larger than the real ones: read the
split, and the steps per second measured without it.

    python benchmarks/her_profile.py --steps 2000 --out runs/benchmarks/her_profile.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SB3_BUFFER = "algorithm.replay_buffer_class.path=stable_baselines3.HerReplayBuffer"
CASES = [("sac_her", "SB3's", [SB3_BUFFER]), ("sac_her", "ours", []),
         ("sbx_sac_her", "SB3's", [SB3_BUFFER]), ("sbx_sac_her", "ours", [])]
PARTS = ("env step", "HER sampling", "update", "prediction", "callbacks", "other")

MEASURE = r'''
import cProfile, json, pstats, sys, tempfile
from hydrarl.config.compose import compose
from hydrarl.training.train import run

algorithm, steps, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "profile"
profiler = cProfile.Profile()


class ProfileSecondEpoch:
    """The run's reporter: told the end of each epoch; the first one is the warm-up (JAX compiles during it)."""
    def report(self, value, epoch):
        if profile and epoch == 1:
            profiler.enable()
        return False


cfg = compose(["env=FetchReach", f"algorithm={algorithm}", "seed=0", "logger=[]", "trainer.progress_bar=false",
               "trainer.n_test_rollouts=0", "trainer.n_epochs=2", f"trainer.eval_after_n_steps={steps}",
               "algorithm.learning_starts=500", *sys.argv[4:]])
with tempfile.TemporaryDirectory() as tmp:
    run(cfg, f"{tmp}/r", ProfileSecondEpoch())
    profiler.disable()
    state = json.load(open(f"{tmp}/r/checkpoints/last/trainer_state.json"))
out = {"steps_per_s": state["history"][-1]["time/steps_per_second"]}
if profile:
    stats = pstats.Stats(profiler).stats
    def cumulative(file_part, name):
        return sum(v[3] for (f, _, n), v in stats.items() if file_part in f and n == name)
    sample = cumulative("her", "sample")
    parts = {"env step": cumulative("base_vec_env.py", "step"), "HER sampling": sample,
             "update": cumulative("sac.py", "train") - sample,
             "prediction": cumulative("off_policy_algorithm.py", "_sample_action"),
             "callbacks": cumulative("callbacks.py", "on_step")}
    parts["other"] = cumulative("off_policy_algorithm.py", "learn") - sum(parts.values())
    out["ms_per_step"] = {k: 1000 * v / steps for k, v in parts.items()}
print(json.dumps(out))
'''


def measure(algorithm: str, overrides: list[str], steps: int, profile: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, algorithm, str(steps), "profile" if profile else "plain",
                           *overrides], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{algorithm} {overrides} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="timed env steps per measurement (default 2000)")
    p.add_argument("--out", type=Path, help="also write the measurements to this JSON file")
    args = p.parse_args()
    rows = []
    for algorithm, buffer, overrides in CASES:
        plain = measure(algorithm, overrides, args.steps, profile=False)
        profiled = measure(algorithm, overrides, args.steps, profile=True)
        rows.append({"algorithm": algorithm, "buffer": buffer, "steps_per_s": plain["steps_per_s"],
                     "ms_per_step_profiled": profiled["ms_per_step"]})
        print(f"{algorithm}, {buffer} buffer: {rows[-1]}", file=sys.stderr, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    print("| agent | HER buffer | steps/s | " + " | ".join(f"{p} (ms)" for p in PARTS) + " |")
    print("|---|---|---:|" + "---:|" * len(PARTS))
    for r in rows:
        ms = r["ms_per_step_profiled"]
        print(f"| {r['algorithm']} | {r['buffer']} | {r['steps_per_s']:.0f} | " + " | ".join(f"{ms[p]:.2f}" for p in PARTS) + " |")


if __name__ == "__main__":
    main()
