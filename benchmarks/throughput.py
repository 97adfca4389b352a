"""Benchmark: training throughput of experiment/train.py against a bare SB3 script with the same
hyperparameters (FetchReach, SAC+HER, [64, 64], one critic, VecNormalize, TimeFeatureWrapper,
one torch thread), side by side in one invocation, alternating A/B ``--repeats`` times.

Bare: ``model.learn(steps)`` timed around the call. train.py: the real command (MLflow on, no
evaluation so both do the same work), its learn-loop rate from ``time/steps_per_second`` and
its whole wall time.

    python benchmarks/throughput.py --steps 4000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydrarl.paths import TRAIN_SCRIPT

BARE = r'''
import sys, time, torch, gymnasium as gym
from sb3_contrib.common.wrappers import TimeFeatureWrapper
from stable_baselines3 import SAC, HerReplayBuffer
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
steps, seed = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
env = DummyVecEnv([lambda: Monitor(TimeFeatureWrapper(gym.make("gymnasium_robotics:FetchReach-v4")))])
env.seed(seed)
env = VecNormalize(env, norm_obs=True, norm_reward=False)
model = SAC("MultiInputPolicy", env, learning_rate=1e-3, buffer_size=1_000_000, learning_starts=1000, batch_size=256,
            tau=0.005, gamma=0.95, train_freq=1, gradient_steps=1, ent_coef="auto",
            replay_buffer_class=HerReplayBuffer, replay_buffer_kwargs=dict(n_sampled_goal=4, goal_selection_strategy="future"),
            policy_kwargs=dict(net_arch=[64, 64], n_critics=1), seed=seed, device="cpu")
start, cpu = time.perf_counter(), time.process_time()
model.learn(steps)
print(steps / (time.perf_counter() - start), steps / (time.process_time() - cpu))
'''


def bare(steps: int, seed: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second) of ``model.learn``."""
    out = subprocess.run([sys.executable, "-c", BARE, str(steps), str(seed)], capture_output=True, text=True, check=True)
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def ours(steps: int, seed: int, out: Path) -> tuple[float, float, float]:
    """(steps per wall second, steps per CPU second, whole-command seconds) of experiment/train.py."""
    run_dir = out / f"ours-{time.time_ns()}"
    start = time.perf_counter()
    subprocess.run([sys.executable, str(TRAIN_SCRIPT), f"seed={seed}", "trainer.n_epochs=1",
                    f"trainer.eval_after_n_steps={steps}", "trainer.n_test_rollouts=0", "trainer.progress_bar=true",
                    f"hydra.run.dir={run_dir}", f"logger.mlflow.tracking_uri=sqlite:///{out}/mlflow.db"],
                   capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    state = json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())
    epoch = state["history"][0]
    return epoch["time/steps_per_second"], epoch["time/steps_per_cpu_second"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    rows = []
    for _ in range(args.repeats):
        b_wall, b_cpu = bare(args.steps, args.seed)
        o_wall, o_cpu, command = ours(args.steps, args.seed, out)
        rows.append((b_wall, b_cpu, o_wall, o_cpu, command))
        print(f"bare SB3 {b_wall:.1f} steps/s ({b_cpu:.1f} per CPU s) | train.py {o_wall:.1f} steps/s ({o_cpu:.1f} per CPU s), "
              f"whole command {command:.1f} s", flush=True)
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"\nmedians over {args.repeats} pairs, {args.steps} steps: wall-clock bare {med[0]:.1f}, train.py {med[2]:.1f} steps/s "
          f"(ratio {med[2] / med[0]:.3f}); CPU-time bare {med[1]:.1f}, train.py {med[3]:.1f} steps/CPU-s (ratio {med[3] / med[1]:.3f}); "
          f"train.py whole command {med[4]:.1f} s")


if __name__ == "__main__":
    main()
