"""Benchmark: wall time to 0.9 success on FetchReach, side by side in one invocation, per seed: the default run on
each backend, ``experiment/train.py seed=S`` (sac_her, torch) and ``experiment/train.py seed=S
algorithm=sbx_sac_her`` (JAX), ``experiment/train.py seed=S +experiment=FetchReach/sbx_sac_her`` (JAX, 3 gradient
steps per env step), and with ``--zoo-python`` RL Zoo's own train script with its own FetchReach SAC
settings (``python -m rl_zoo3.train --algo sac``, read from the rl_zoo3 package's ``hyperparams/sac.yml``), evaluated
like ours (10 deterministic episodes every 1,000 env steps). rl_zoo3 is not one of our dependencies: install it in a
venv of its own (``--zoo-python`` is that venv's python).

Every run is timed the same way: the seconds from spawning the command to the line that reports each evaluation.
Prints, per seed, the env steps and seconds to the first evaluation with success >= 0.9 and the ratios; ``--plot``
draws success against seconds.

    python benchmarks/fetchreach_backends.py --seeds 1 2 3 --jobs 1 --steps 6000 \
        --zoo-python /path/to/zoo-venv/bin/python --plot docs/img/fetchreach_backends.png
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fetchreach_success import success_axes

from hydrarl.paths import TRAIN_SCRIPT

OURS = re.compile(r"epoch \d+/\d+ \| steps (\d+) \| success ([\d.]+)")
ZOO_STEPS, ZOO_SUCCESS = re.compile(r"Eval num_timesteps=(\d+)"), re.compile(r"Success rate: ([\d.]+)%")
ARMS = {  # name: (train.py overrides, colour, label)
    "torch": ([], "tab:blue", "ours, torch (sac_her)"),
    "JAX": (["algorithm=sbx_sac_her"], "tab:orange", "ours, JAX (sbx_sac_her)"),
    "JAX x3": (["+experiment=FetchReach/sbx_sac_her"], "tab:red", "ours, JAX, 3 updates per step"),
}
ZOO = ("tab:green", "RL Zoo (sac, its settings)")


def ours(extra: list[str], steps: int):
    def command(seed: int, run_dir: Path) -> list[str]:
        return [sys.executable, str(TRAIN_SCRIPT), f"seed={seed}", "trainer.progress_bar=false",
                f"trainer.n_epochs={steps // 1000}", f"hydra.run.dir={run_dir}",
                f"logger.mlflow.tracking_uri=sqlite:///{run_dir}/mlflow.db", *extra]
    return command


def zoo(python: str, steps: int):
    """RL Zoo's train script with the FetchReach SAC settings its package ships (its key is FetchReach-v1; our
    gymnasium-robotics registers v4, so they are written to a config file under that name)."""
    where = subprocess.run([python, "-c", "import os, rl_zoo3; print(os.path.dirname(rl_zoo3.__file__))"],
                           capture_output=True, text=True, check=True).stdout.strip()

    def command(seed: int, run_dir: Path) -> list[str]:
        import yaml

        settings = yaml.safe_load(Path(where, "hyperparams", "sac.yml").read_text())["FetchReach-v1"]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "zoo.yml").write_text(yaml.safe_dump({"FetchReach-v4": settings}))
        return [python, "-m", "rl_zoo3.train", "--algo", "sac", "--env", "FetchReach-v4", "--gym-packages",
                "gymnasium_robotics", "-conf", str(run_dir / "zoo.yml"), "--eval-freq", "1000", "--eval-episodes", "10",
                "--n-eval-envs", "1", "-n", str(steps), "--seed", str(seed), "-f", str(run_dir / "logs"),
                "--num-threads", "1", "--device", "cpu"]
    return command


def timed(seed: int, command: list[str], run_dir: Path) -> dict:
    """Run a command; record (seconds since the spawn, env steps, success) for each evaluation line it prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    start, evals, pending, tail = time.time(), [], None, []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=run_dir) as proc:
        for line in proc.stdout:
            tail = (tail + [line])[-20:]
            if m := OURS.search(line):
                evals.append((time.time() - start, int(m[1]), float(m[2])))
            elif m := ZOO_STEPS.search(line):
                pending = int(m[1])
            elif (m := ZOO_SUCCESS.search(line)) and pending is not None:
                evals.append((time.time() - start, pending, float(m[1]) / 100))
    if proc.returncode != 0 or not evals:
        return {"seed": seed, "error": "".join(tail)}
    first = next(((t, s) for t, s, ok in evals if ok >= 0.9), (None, None))
    return {"seed": seed, "seconds_to_0.9": first[0], "steps_to_0.9": first[1], "wall_s": time.time() - start,
            "seconds": [t for t, _, _ in evals], "steps": [s for _, s, _ in evals], "curve": [ok for _, _, ok in evals]}


def plot(rows: dict[str, list[dict]], path: Path) -> None:
    """Success per evaluation against seconds since the command, one line per run, a colour per arm."""
    ax, save = success_axes("FetchReach: wall time to success (one core per run)")
    for arm, runs in rows.items():
        colour, label = ZOO if arm == "RL Zoo" else ARMS[arm][1:]
        for i, r in enumerate(r for r in runs if "curve" in r):
            ax.plot(r["seconds"], r["curve"], marker="o", color=colour, alpha=0.8, markersize=4,
                    label=label if i == 0 else None)
    save("seconds since the command", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--zoo-python", help="a python with rl_zoo3 installed: adds RL Zoo's own run")
    parser.add_argument("--steps", type=int, default=10_000, help="env steps of each run (evaluations every 1,000)")
    parser.add_argument("--plot", type=Path, help="write a PNG of success against seconds here")
    parser.add_argument("--reuse", type=Path, help="summarise the runs of an earlier invocation (its directory)")
    args = parser.parse_args()
    out = args.reuse or Path(tempfile.mkdtemp(prefix="bench-backends-"))
    arms = list(ARMS) + (["RL Zoo"] if args.zoo_python or (args.reuse and (out / "RL_Zoo").is_dir()) else [])

    commands = {} if args.reuse else {a: ours(o, args.steps) for a, (o, _, _) in ARMS.items()}
    if args.zoo_python and not args.reuse:
        commands["RL Zoo"] = zoo(args.zoo_python, args.steps)  # finds rl_zoo3 once

    def run(work: tuple[str, int]) -> dict:
        arm, seed = work
        record = out / arm.replace(" ", "_") / f"seed{seed}.json"
        if args.reuse:
            return json.loads(record.read_text())
        run_dir = record.with_suffix("")
        run_dir.mkdir(parents=True, exist_ok=True)
        result = timed(seed, commands[arm](seed, run_dir), run_dir)
        record.write_text(json.dumps(result))
        return result

    work = [(arm, seed) for seed in args.seeds for arm in arms]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(run, work))
    rows = {arm: [r for (a, _), r in zip(work, done, strict=True) if a == arm] for arm in arms}
    if args.plot:
        plot(rows, args.plot)
    pairs = [("JAX", "torch"), ("JAX x3", "torch")] + [(a, "RL Zoo") for a in ARMS if "RL Zoo" in arms]
    print("| seed | " + " | ".join(f"{a}: steps to 0.9 | {a}: seconds" for a in arms) + " | "
          + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
    print("|---|" + "---:|" * (2 * len(arms) + len(pairs)))
    ratios: dict[str, list[float]] = {}
    for i, seed in enumerate(args.seeds):
        runs = {a: rows[a][i] for a in arms}
        for a, r in runs.items():
            if "error" in r:
                print(f"seed {seed}, {a} FAILED:\n{r['error']}", file=sys.stderr)
        secs = {a: r.get("seconds_to_0.9") for a, r in runs.items()}
        cells = [c for a in arms for c in (runs[a].get("steps_to_0.9") or "-", f"{secs[a]:.1f}" if secs[a] else "-")]
        for a, b in pairs:
            ratio = secs[a] / secs[b] if secs[a] and secs[b] else None
            ratios.setdefault(f"{a} / {b}", []).extend([ratio] if ratio else [])
            cells.append(f"{ratio:.2f}" if ratio else "-")
        print(f"| {seed} | " + " | ".join(str(c) for c in cells) + " |")
    for name, values in ratios.items():
        if values:
            print(f"median {name} seconds to 0.9: {statistics.median(values):.2f}")
    print(f"(runs in {out})")


if __name__ == "__main__":
    main()
