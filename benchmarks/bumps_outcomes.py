"""Benchmark helper: how a Bumps policy's episodes end, by where the finger starts.

Plays ``--episodes`` deterministic episodes of a trained run (its ``--checkpoint``) in the run's own env, the
hidden state carried as in evaluation, and counts each episode's start (left of bump1, between the bumps, right of
bump2) against its end: success, bump1 moved, bump2 pushed left, the finger at the edge of its travel, or the
time limit. Prints one line per start region.

    python benchmarks/bumps_outcomes.py runs/bench/recurrent/Bumps_rsac_td5_s3 --checkpoint best --episodes 100
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np

from hydrarl.analysis.evaluate_agents import agent_from_path, make_eval_env
from hydrarl.envs.bumps.env import MOVED, BumpsEnv
from hydrarl.errors import UserError, exit_on_user_error

REGIONS = ("left of bump1", "between the bumps", "right of bump2")


def outcome(info: dict, start_bumps: np.ndarray, truncated: bool) -> str:
    """How an episode ended, from its last ``info`` and the bump positions (m) at its start."""
    moved = np.asarray(info["bumps"]) - start_bumps
    if info.get("is_success"):
        return "success"
    if abs(moved[0]) > MOVED:
        return "bump1 moved"
    if moved[1] < -MOVED:
        return "bump2 pushed left"
    return "time limit" if truncated else "edge"


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a Bumps run directory")
    p.add_argument("--checkpoint", default="best", help="checkpoint name (default best)")
    p.add_argument("--episodes", type=int, default=100, help="episodes to play (default 100)")
    p.add_argument("--seed", type=int, default=123, help="env seed (default 123)")
    args = p.parse_args(argv)
    if args.episodes < 1:
        raise UserError(f"--episodes {args.episodes} is not allowed: an integer >= 1.")
    agent = agent_from_path(args.run, args.checkpoint)
    env = make_eval_env(agent, args.seed)
    base = env.unwrapped  # the DummyVecEnv under a VecNormalize (a run with env.normalize): its reset infos
    bumps_env = base.envs[0].unwrapped
    if not isinstance(bumps_env, BumpsEnv):
        raise UserError(f"{args.run}: a run on Bumps, BumpsPunish or BumpsTest is needed; this one's env is {agent.env_cfg.id}.")
    model = agent.make_model(env, args.seed)
    table: Counter = Counter()
    obs = env.reset()
    for _ in range(args.episodes):
        start_bumps, y = np.asarray(base.reset_infos[0]["bumps"]), bumps_env.scene.finger_y()  # the episode's reset info
        region = REGIONS[int(np.searchsorted(start_bumps, y))]
        state, episode_start, done = None, np.ones(1, dtype=bool), np.zeros(1, dtype=bool)
        while not done[0]:
            action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
            obs, _, done, infos = env.step(action)  # the VecEnv resets itself: obs is the next episode's first
            episode_start = done
        table[region, outcome(infos[0], start_bumps, bool(infos[0].get("TimeLimit.truncated")))] += 1
    for region in REGIONS:
        ends = {end: n for (where, end), n in table.items() if where == region}
        print(", ".join([f"{region}: {sum(ends.values())} episodes", *(f"{n} {end}" for end, n in sorted(ends.items()))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
