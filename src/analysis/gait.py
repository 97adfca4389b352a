"""``experiment/plot_gait.py``: one Cassie episode, step by step, as plots (and a video).

    python experiment/plot_gait.py                                  # zero action: the PD loop holds the neutral pose
    python experiment/plot_gait.py runs/Cassie/ppo_cassie/<run> --speed 0.5 render=record
    python experiment/plot_gait.py --controller 'Cassie/ensemble algorithm.members=[runs/a,runs/b]'

Plays one episode of a trained run (its ``checkpoints/<--checkpoint>/model.zip`` with its frozen
normalisation, deterministic policy) or, with no run given, of the constant zero action (in residual
mode the PD loop then holds the neutral standing pose). Every step's diagnostics come from the env's
``info`` (see ``hydrarl.envs.cassie.env``): pelvis height and forward speed with the commanded speed,
foot heights, joint-side motor torques, vertical ground reaction forces, PD targets and raw actions.

Writes ``<out>/gait.png`` (six panels against time in seconds), ``gait.csv`` (one row per policy step,
one column per value) and, with ``render=record``, ``gait.mp4`` of the same episode. ``--speed``
fixes the commanded speed (the env otherwise draws it from its ``speeds``). Bad input: one line on
stderr, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from hydrarl.analysis.output import out_argument, output_folder, pyplot
from hydrarl.cli_args import ArgumentParser, number
from hydrarl.errors import UserError, exit_on_user_error

MOTORS = ("hip roll", "hip yaw", "hip pitch", "knee", "foot")
JOINTS = tuple(f"{side} {m}" for side in ("L", "R") for m in MOTORS)
SCALARS = ("pelvis_height", "pelvis_speed", "speed_command", "phase")   # info keys with one value per step
VECTORS = {"foot_height": ("left", "right"), "foot_force": ("left", "right"),
           "torque": JOINTS, "pd_target": JOINTS, "action": JOINTS}     # info keys with one value per column


RENDERS = ("none", "record")  # render=<value>: record also writes gait.mp4


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="experiment/plot_gait.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agent", nargs="?", metavar="RUN_DIR|MODEL_ZIP", help="a trained Cassie run (default: the zero action)")
    p.add_argument("render", nargs="?", default=None, metavar="render=none|record",
                   help="render=record also writes gait.mp4 of the episode (default render=none)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="checkpoint of a run directory (default best)")
    p.add_argument("--seed", type=number(int, "seed of the episode's reset and sensor noise", least=0), default=0,
                   help="seeds the episode's reset (phase, speed) and any sensor noise (default 0)")
    p.add_argument("--speed", type=number(float, "commanded forward speed in m/s"), default=None, metavar="M_PER_S",
                   help="commanded forward speed (default: drawn from env speeds)")
    p.add_argument("--steps", type=number(int, "policy steps to play", least=1), default=None, metavar="N",
                   help="play at most N policy steps (the env's time limit lowered; default: the whole episode)")
    p.add_argument("--env", default="Cassie", help="env config for the zero action (default Cassie)")
    p.add_argument("--controller", default=None, metavar="'Cassie/ALGO [KEY=VALUE ...]'",
                   help="play a controller instead of a run, e.g. a policy ensemble: "
                        "'Cassie/ensemble algorithm.members=[runs/a,runs/b]'")
    p.add_argument("--out", type=out_argument, default=None, help="output folder (default runs/gait/<date>_<time>)")
    return p


def split_render(args: argparse.Namespace) -> bool:
    """Sort the two positional words (argparse fills ``agent`` first, so a lone ``render=record`` lands there):
    ``args.agent`` becomes the run (or None) and the result is whether to record. A UserError for a render
    other than ``render=none|record`` or for two runs or two renders."""
    words = [word for word in (args.agent, args.render) if word is not None]
    renders = [word for word in words if word.startswith("render=")]
    agents = [word for word in words if not word.startswith("render=")]
    if len(agents) > 1:
        raise UserError(f"one run at a time: {' and '.join(agents)} given; the second word may be render=none or render=record.")
    if len(renders) > 1:
        raise UserError(f"{' and '.join(renders)}: give render once, render=none or render=record.")
    value = renders[0].partition("=")[2] if renders else "none"
    if value not in RENDERS:
        raise UserError(f"render={value} is unknown: render must be none or record (render=record also writes gait.mp4).")
    args.agent = agents[0] if agents else None
    return value == "record"


def cassie_agent(path: str | None, controller: str | None, checkpoint: str, tool: str):
    """The evaluate.py ``Agent`` of run ``path`` (or a model.zip) or of ``controller`` (``'Cassie/ALGO ...'``),
    refused unless exactly one is given and its env is Cassie; ``tool`` names the command in the errors."""
    from hydrarl.analysis.evaluate_agents import agent_from_controller, agent_from_path

    if bool(path) == bool(controller):
        given = f"the run {path} and --controller {controller!r} given" if path else "none given"
        raise UserError(f"{tool} plays one agent: a run directory (or model.zip), or --controller 'Cassie/ALGO ...' ({given}).")
    agent = agent_from_path(path, checkpoint) if path else agent_from_controller(controller)
    if not str(agent.env_cfg.id).endswith("Cassie-v0"):
        raise UserError(f"{agent.source}: {tool} plays Cassie episodes; this agent's env is {agent.env_cfg.id}.")
    return agent


def load_agent(args: argparse.Namespace):
    """The agent to plot: the run given, the controller given, or the env's constant zero action."""
    from hydrarl.config.compose import check_flag_choice

    if not args.agent and not args.controller:
        check_flag_choice("--env", args.env, "env", args.env)
        return cassie_agent(None, f"{args.env}/constant", args.checkpoint, "plot_gait.py")
    return cassie_agent(args.agent, args.controller, args.checkpoint, "plot_gait.py")


def play_episode(agent, seed: int, record: bool,
                 speed: float | None = None) -> tuple[dict[str, np.ndarray], list[np.ndarray], float, dict[str, float]]:
    """One deterministic episode: ({info key: (steps,) or (steps, k) array}, frames, policy rate in Hz, gait
    summary: the env's episode metrics at the last step and ``mirror_gap_rms``). ``speed`` (m/s) is passed as the
    reset option that fixes the command; the env and its observation space stay as trained."""
    from stable_baselines3.common.utils import set_random_seed

    from hydrarl.analysis.evaluate_agents import make_eval_env
    from hydrarl.training.evaluation import MirrorGap, run_episodes

    set_random_seed(seed)
    env = make_eval_env(agent, seed, render_mode="rgb_array" if record else None)
    rows: dict[str, list] = {key: [] for key in (*SCALARS, *VECTORS)}
    frames: list[np.ndarray] = []

    summary: dict[str, float] = {}

    def on_step(actions: np.ndarray, infos: list[dict]) -> None:
        for key in rows:
            rows[key].append(np.asarray(infos[0][key], dtype=float))
        summary.update(infos[0].get("episode_metrics", {}))

    try:
        model = agent.make_model(env, seed)
        if speed is not None:
            env.set_options({"speed": float(speed)})  # for the next reset only: the episode's first
        gap = MirrorGap(env)
        run_episodes(model, env, 1, seed, deterministic=True, on_step=on_step, on_action=gap.record,
                     on_frame=(lambda: frames.append(env.get_images()[0])) if record else None)
        summary["mirror_gap_rms"] = gap.rms(model)
        rate = float(env.get_attr("metadata")[0]["render_fps"])
    finally:
        env.close()
    return {key: np.stack(values) for key, values in rows.items()}, frames, rate, summary


def gait_line(summary: dict[str, float]) -> str:
    """One line of the episode's steps, swing heights and symmetry indices (``gait_stats``) and mirror gap."""
    return (f"steps L/R {summary['steps_left']:.0f}/{summary['steps_right']:.0f}, swing height L/R "
            f"{100 * summary['swing_height_left']:.1f}/{100 * summary['swing_height_right']:.1f} cm; symmetry index: "
            f"step length {summary['symmetry_step_length']:.0f} %, swing height {summary['symmetry_swing_height']:.0f} %, "
            f"stance time {summary['symmetry_stance_time']:.0f} %; mirror gap RMS {summary['mirror_gap_rms']:.3f}")


def write_csv(series: dict[str, np.ndarray], rate: float, path: Path) -> Path:
    header = ["step", "time_s", *SCALARS, *(f"{key}/{col}" for key, cols in VECTORS.items() for col in cols)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(len(series["phase"])):
            values = [series[key][i] for key in SCALARS] + [v for key in VECTORS for v in series[key][i]]
            writer.writerow([i + 1, f"{(i + 1) / rate:.4f}", *(f"{v:.6g}" for v in values)])
    return path


def plot(series: dict[str, np.ndarray], rate: float, title: str, path: Path) -> Path:
    plt = pyplot()
    t = np.arange(1, len(series["phase"]) + 1) / rate
    fig, axes = plt.subplots(3, 2, figsize=(13, 10), sharex=True)
    ax = axes[0, 0]
    ax.plot(t, series["pelvis_height"], label="pelvis height (m)")
    ax.plot(t, series["pelvis_speed"], label="forward speed (m/s)")
    ax.plot(t, series["speed_command"], "--", label="commanded speed (m/s)")
    ax.set_title("pelvis")
    panels = [(axes[0, 1], "foot_height", "foot height (m)"), (axes[1, 0], "torque", "motor torque, joint side (Nm)"),
              (axes[1, 1], "foot_force", "vertical ground reaction force (N)"), (axes[2, 0], "pd_target", "PD target (rad)"),
              (axes[2, 1], "action", "raw action")]
    for ax, key, label in panels:
        for j, col in enumerate(VECTORS[key]):
            ax.plot(t, series[key][:, j], label=col, color=f"C{j % 5}", linestyle="-" if j < 5 or len(VECTORS[key]) == 2 else ":")
        ax.set_title(label)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="upper right")
    for ax in axes[2]:
        ax.set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    record = split_render(args)
    agent = load_agent(args)
    if args.steps is not None:
        limit = agent.env_cfg.max_episode_steps
        agent.env_cfg.max_episode_steps = args.steps if limit is None else min(limit, args.steps)
    with output_folder(args.out, "gait") as out:
        series, frames, rate, summary = play_episode(agent, args.seed, record, args.speed)
        steps = len(series["phase"])
        title = (f"{agent.label}: {steps} steps ({steps / rate:.2f} s), mean speed {series['pelvis_speed'].mean():.2f} m/s, "
                 f"command {series['speed_command'][0]:.2f} m/s, seed {args.seed}")
        print(title)
        print(gait_line(summary))
        title += "\n" + gait_line(summary)
        paths = [plot(series, rate, title, out / "gait.png"), write_csv(series, rate, out / "gait.csv")]
        if record:
            from hydrarl.training.video import write_mp4

            paths.append(write_mp4(frames, out / "gait.mp4", int(round(rate))))
    for path in paths:
        print(f"wrote {path}")
    return 0
