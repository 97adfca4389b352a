"""Benchmark figure: evaluation curves of training runs that continue each other (a curriculum of stages, each
restored from the previous one's last checkpoint), stage after stage on one env-step axis.

Each ``--line LABEL=RUN_ID[,RUN_ID...]`` is one curve: its runs in stage order, each run's steps shifted by the
steps of the runs before it. Stage boundaries (of the first line) are dashed. One panel per ``--metric``, three to a row; writes
``<out>.png`` and ``<out>.csv`` (label, stage, env step, metric, value).

    python benchmarks/cassie_stages.py --tracking-uri sqlite:///runs/bench/cassie/mlflow.db \\
        --line PPO=<stand>,<track>,<walk> --line MirrorPPO=<stand>,<track>,<walk> --out docs/img/cassie_mirror
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from hydrarl.analysis.runs import metric_history, open_client
from hydrarl.paths import default_tracking_uri

METRICS = ["eval/mean_ep_length", "eval/forward_speed", "eval/symmetry_stance_time", "eval/mirror_gap_rms"]


def line(text: str) -> tuple[str, list[str]]:
    label, sep, ids = text.partition("=")
    if not sep or not label or not ids:
        raise argparse.ArgumentTypeError(f"{text!r}: give LABEL=RUN_ID[,RUN_ID...]")
    return label, ids.split(",")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=default_tracking_uri())
    p.add_argument("--line", type=line, action="append", required=True, metavar="LABEL=RUN_ID[,RUN_ID...]")
    p.add_argument("--metric", nargs="+", default=METRICS)
    p.add_argument("--out", type=Path, required=True, help="path without suffix of the PNG and CSV")
    args = p.parse_args()
    client = open_client(args.tracking_uri)
    cols = min(3, len(args.metric))
    rows_of_panels = -(-len(args.metric) // cols)
    fig, grid = plt.subplots(rows_of_panels, cols, figsize=(4.6 * cols, 3.3 * rows_of_panels), squeeze=False)
    axes = grid.ravel()[: len(args.metric)]
    for ax in grid.ravel()[len(args.metric):]:
        ax.set_visible(False)
    rows = []
    for n, (label, run_ids) in enumerate(args.line):
        offset = 0
        for stage, run_id in enumerate(run_ids, start=1):
            length_steps, _ = metric_history(client, run_id, "eval/mean_ep_length")
            for ax, key in zip(axes, args.metric, strict=True):
                steps, values = metric_history(client, run_id, key)
                ax.plot(steps + offset, values, color=f"C{n}", label=label if stage == 1 else None, marker=".", lw=1.2)
                rows += [(label, stage, int(s) + offset, key, float(v)) for s, v in zip(steps, values, strict=True)]
            if n == 0 and stage < len(run_ids):
                for ax in axes:
                    ax.axvline(offset + length_steps[-1], color="grey", ls="--", lw=0.8)
            offset += int(length_steps[-1])
    for ax, key in zip(axes, args.metric, strict=True):
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        csv.writer(f).writerows([("label", "stage", "env_step", "metric", "value"), *rows])
    print(f"wrote {args.out.with_suffix('.png')}\nwrote {args.out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
