"""Benchmark: env steps/s of the recurrent agents next to MLP SAC, through the real command, side by side.

For each env (default Pendulum-p and Bumps) and each setting, ``experiment/train.py`` runs two phases as epochs:
the warm-up (``learning_starts`` steps of random actions, no updates) and then ``--steps`` training steps, one
gradient step each. The rate reported is the second epoch's ``time/steps_per_second`` (training only, evaluation
off), read from the run's trainer state. The settings alternate, ``--repeats`` times, so slow phases of a shared
machine hit each alike; the table gives the median, the spread and the ratio to MLP SAC.

    python benchmarks/recurrent_speed.py --repeats 3
    python benchmarks/recurrent_speed.py --envs Pendulum-p --settings sac rsac --repeats 1 --steps 300

Settings: ``sac`` (algorithm=sac, SB3's defaults), ``rsac`` (+experiment=<env>/rsac, the per-env settings),
``rsac_users`` (algorithm=rsac: the users' 2-layer LSTM 256 over whole episodes; measured over ``--steps // 5``
steps, it is slow), ``rtd3`` and ``rdpg`` (the per-env rsac settings' sizes on those agents).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hydrarl.paths import TRAIN_SCRIPT
from hydrarl.training.checkpoint import STATE

WARMUP = 1000
SIZES = ["algorithm.segment_len=32", "algorithm.batch_size=16", "algorithm.policy_kwargs.hidden_size=64",
         "algorithm.policy_kwargs.n_layers=1", "algorithm.policy_kwargs.net_arch=[128,128]"]
SETTINGS = {
    "sac": lambda env: [f"env={env}", "algorithm=sac"],
    "rsac": lambda env: [f"+experiment={env}/rsac"],
    "rsac_users": lambda env: [f"env={env}", "algorithm=rsac"],
    "rtd3": lambda env: [f"env={env}", "algorithm=rtd3", *SIZES],
    "rdpg": lambda env: [f"env={env}", "algorithm=rdpg", *SIZES],
}


def rate(env: str, setting: str, steps: int, seed: int) -> float:
    """Env steps per wall second of ``steps`` training steps after a random warm-up of ``WARMUP`` steps."""
    steps = max(steps // 5, 50) if setting == "rsac_users" else steps
    with tempfile.TemporaryDirectory() as tmp:
        chunk = min(steps, WARMUP)  # epochs of `chunk` steps: the warm-up's, then at least one of training
        epochs = -(-WARMUP // chunk) + max(1, steps // chunk)
        cmd = [sys.executable, str(TRAIN_SCRIPT), *SETTINGS[setting](env), f"seed={seed}", f"algorithm.learning_starts={WARMUP}",
               f"trainer.eval_after_n_steps={chunk}", f"trainer.n_epochs={epochs}", "trainer.n_test_rollouts=0",
               "trainer.early_stop.threshold=null", "trainer.progress_bar=false", "logger=[]", f"hydra.run.dir={tmp}/run"]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        history = json.loads((Path(tmp) / "run" / "checkpoints" / "last" / STATE).read_text())["history"]
    training = [h for h in history if h["time/total_timesteps"] > WARMUP]
    return statistics.median(h["time/steps_per_second"] for h in training)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["Pendulum-p", "Bumps"])
    p.add_argument("--settings", nargs="+", default=["sac", "rsac", "rtd3", "rdpg", "rsac_users"], choices=list(SETTINGS))
    p.add_argument("--steps", type=int, default=1000, help="training steps measured per run (after the warm-up)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    rates: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for env in args.envs:
            for setting in args.settings:
                value = rate(env, setting, args.steps, seed=repeat + 1)
                rates.setdefault((env, setting), []).append(value)
                print(f"repeat {repeat + 1}: {env} {setting}: {value:.1f} env steps/s", flush=True)
    print("\n| env | setting | env steps/s (median) | min–max | × MLP SAC |\n|---|---|---|---|---|")
    for (env, setting), values in rates.items():
        base = rates.get((env, "sac"))
        ratio = f"{statistics.median(values) / statistics.median(base):.2f}" if base else "–"
        print(f"| {env} | {setting} | {statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
