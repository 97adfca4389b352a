"""Benchmark: does the default experiment (FetchReach, sac_her) reach eval success >= 0.9 within
10,000 env steps, for each seed? Runs ``experiment/train.py seed=S`` (the defaults `make train`
uses) for each seed, ``--jobs`` at a time, and prints a markdown table.

    python benchmarks/fetchreach_success.py --seeds 1 2 3 --jobs 2 --plot docs/img/fetchreach_sac_her.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hydrarl.paths import TRAIN_SCRIPT


def one(seed: int, out: Path, extra: list[str], reuse: bool = False) -> dict:
    run_dir = out / f"seed{seed}"
    start = time.time()
    if reuse:
        return summarise(seed, run_dir, wall=float("nan"))
    cmd = [sys.executable, str(TRAIN_SCRIPT), f"seed={seed}", "trainer.progress_bar=false",
           f"hydra.run.dir={run_dir}", f"logger.mlflow.tracking_uri=sqlite:///{out}/mlflow.db", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        return {"seed": seed, "error": proc.stderr[-2000:]}
    return summarise(seed, run_dir, wall)


def summarise(seed: int, run_dir: Path, wall: float) -> dict:
    state = json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())
    steps = [(h["time/epoch"], h["eval/success_rate"]) for h in state["history"]]
    per_epoch = state["num_timesteps"] // state["epoch"]
    first = next((int(e) * per_epoch for e, s in steps if s >= 0.9), None)
    # seconds from the command to the end of each evaluation: start-up, then each epoch's training (its steps at its
    # rate) and evaluation
    elapsed, seconds = state["history"][0].get("time/first_step_seconds") or 0.0, []
    for h in state["history"]:
        elapsed += per_epoch / h["time/steps_per_second"] + h.get("time/eval_seconds", 0.0)
        seconds.append(elapsed)
    seconds_to = next((t for t, (_, s) in zip(seconds, steps, strict=True) if s >= 0.9), None)
    return {
        "seed": seed,
        "first_step_at_0.9": first,
        "seconds_to_0.9": seconds_to,
        "final_success": steps[-1][1],
        "train_steps_per_s": sum(h["time/steps_per_second"] for h in state["history"]) / len(state["history"]),
        "first_step_seconds": state["history"][0].get("time/first_step_seconds"),
        "wall_s": wall,
        "curve": [s for _, s in steps],
        "steps": [int(e) * per_epoch for e, _ in steps],
        "seconds": seconds,
    }


def success_axes(title: str):
    """A figure for success rates per evaluation (one line per run is the caller's), and a function that finishes it
    (x label, the 0.9 line, legend) and writes it to a path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)

    def save(xlabel: str, path: Path) -> None:
        ax.axhline(0.9, color="grey", linestyle="--", linewidth=1, label="0.9")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eval success rate (10 episodes)")
        ax.set_title(title)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)

    return ax, save


def plot(rows: list[dict], path: Path, overrides: list[str]) -> None:
    """Success rate per evaluation, one line per seed, and the 0.9 bar."""
    ax, save = success_axes(f"FetchReach: experiment/train.py seed=S {' '.join(overrides)}".strip())
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-")]
    for i, r in enumerate(r for r in rows if "curve" in r):
        marker, line = styles[i % len(styles)]
        ax.plot(r["steps"], r["curve"], marker=marker, linestyle=line, markersize=7 - i, label=f"seed {r['seed']}")
    save("env steps", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--plot", type=Path, help="write a PNG of the success curves here")
    parser.add_argument("--reuse", type=Path, help="summarise the runs of an earlier invocation (its directory) instead of training")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides")
    args = parser.parse_args()
    out = args.reuse or Path(tempfile.mkdtemp(prefix="bench-fetchreach-"))
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda s: one(s, out, args.overrides, reuse=args.reuse is not None), args.seeds))
    if args.plot:
        plot(rows, args.plot, args.overrides)
    print("| seed | first eval with success >= 0.9 (env steps) | seconds to it | final success | train steps/s | first env step (s) | wall (s) | success per epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['seed']} | FAILED: {r['error'][-200:]!r} |")
            continue
        to = "-" if r["seconds_to_0.9"] is None else f"{r['seconds_to_0.9']:.0f}"
        print(f"| {r['seed']} | {r['first_step_at_0.9']} | {to} | {r['final_success']:.2f} | {r['train_steps_per_s']:.0f} | "
              f"{r['first_step_seconds']:.1f} | {r['wall_s']:.0f} | {' '.join(f'{s:.1f}' for s in r['curve'])} |")
    ok = sum(1 for r in rows if r.get("first_step_at_0.9") is not None and r["first_step_at_0.9"] <= 10_000)
    print(f"\n{ok} of {len(rows)} seeds reached 0.9 within 10,000 env steps (runs in {out})")


if __name__ == "__main__":
    main()
