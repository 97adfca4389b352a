"""Benchmark: the default FetchReach run on each backend, side by side: ``experiment/train.py seed=S`` (sac_her, torch)
and ``experiment/train.py seed=S algorithm=sbx_sac_her`` (JAX), for each seed, ``--jobs`` at a time, torch and JAX
alternating. Prints, per seed, the env steps and the seconds from the command to the first evaluation with success
>= 0.9 (start-up, training and evaluations: ``fetchreach_success.summarise``), the ratio of those seconds, and plots
success against seconds for both.

    python benchmarks/fetchreach_backends.py --seeds 1 2 3 --jobs 1 --plot docs/img/fetchreach_backends.png
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fetchreach_success import one, success_axes

BACKENDS = {"torch": [], "JAX": ["algorithm=sbx_sac_her"]}


def plot(rows: dict[str, list[dict]], path: Path) -> None:
    """Success per evaluation against seconds since the command, one line per run, a colour per backend."""
    ax, save = success_axes("FetchReach, the default run on each backend (one core per run)")
    for (backend, runs), colour in zip(rows.items(), ("tab:blue", "tab:orange"), strict=True):
        for i, r in enumerate(runs):
            ax.plot(r["seconds"], r["curve"], marker="o", color=colour, alpha=0.8, markersize=4,
                    label=f"{backend} ({'sbx_sac_her' if backend == 'JAX' else 'sac_her'})" if i == 0 else None)
    save("seconds since the command", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--plot", type=Path, help="write a PNG of success against seconds here")
    parser.add_argument("--reuse", type=Path, help="summarise the runs of an earlier invocation (its directory)")
    args = parser.parse_args()
    out = args.reuse or Path(tempfile.mkdtemp(prefix="bench-backends-"))
    work = [(backend, seed) for seed in args.seeds for backend in BACKENDS]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda w: one(w[1], out / w[0], BACKENDS[w[0]], reuse=args.reuse is not None), work))
    rows = {backend: [r for (b, _), r in zip(work, done, strict=True) if b == backend] for backend in BACKENDS}
    if args.plot:
        plot(rows, args.plot)
    print("| seed | torch: steps to 0.9 | torch: seconds | JAX: steps to 0.9 | JAX: seconds | JAX / torch seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    ratios = []
    for t, j in zip(rows["torch"], rows["JAX"], strict=True):
        ratio = j["seconds_to_0.9"] / t["seconds_to_0.9"] if t["seconds_to_0.9"] and j["seconds_to_0.9"] else None
        ratios += [ratio] if ratio else []
        cells = [t["first_step_at_0.9"], f"{t['seconds_to_0.9'] or 0:.0f}", j["first_step_at_0.9"],
                 f"{j['seconds_to_0.9'] or 0:.0f}", f"{ratio:.2f}" if ratio else "-"]
        print(f"| {t['seed']} | " + " | ".join(str(c) for c in cells) + " |")
    if ratios:
        print(f"\nmedian JAX / torch seconds to 0.9: {statistics.median(ratios):.2f} (runs in {out})")


if __name__ == "__main__":
    main()
