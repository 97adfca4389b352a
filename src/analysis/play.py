"""``experiment/play.py``: a trained Cassie policy (or an ensemble) walking in MuJoCo's interactive viewer, steered
from the keyboard.

    python experiment/play.py runs/Cassie/mirror_ppo/<run>
    python experiment/play.py --controller 'Cassie/ensemble algorithm.members=[runs/a,runs/b]' --speed 0.3

The policy acts deterministically in real time (one env step per 1/40 s). Keys, with the viewer window focused:
Up / Down raise / lower the speed command by 0.1 m/s (within the env's ``speeds``), Right / Left the stepping
frequency (the gait clock, one cycle = two steps; 1.25 Hz for the default 0.8 s period) by 0.1 Hz. Above the robot: the command, the measured forward speed (mean
over the last second) and the frequency. A fall starts a new episode with the same command. The viewer's own keys
and mouse work as usual; closing the window (or ``--seconds``) ends the program, which prints what was played.

Needs a screen: without one (no ``DISPLAY``) it says so and exits 2; ``plot_gait.py render=record`` makes a video
instead.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import deque

import numpy as np

from hydrarl.cli_args import ArgumentParser, number
from hydrarl.errors import UserError, exit_on_user_error

KEY_UP, KEY_DOWN, KEY_RIGHT, KEY_LEFT = 265, 264, 262, 263  # GLFW key codes
SPEED_STEP, FREQUENCY_STEP = 0.1, 0.1  # m/s, Hz per key press


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="experiment/play.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agent", nargs="?", metavar="RUN_DIR|MODEL_ZIP", help="a trained Cassie run")
    p.add_argument("--controller", default=None, metavar="'Cassie/ALGO [KEY=VALUE ...]'",
                   help="a controller instead of a run, e.g. 'Cassie/ensemble algorithm.members=[runs/a,runs/b]'")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="checkpoint of a run directory (default best)")
    p.add_argument("--speed", type=number(float, "the first speed command in m/s", least=0.0), default=0.5,
                   help="the first speed command in m/s (default 0.5)")
    p.add_argument("--seed", type=number(int, "seed of the resets", least=0), default=0, help="seeds the resets (default 0)")
    p.add_argument("--seconds", type=number(float, "seconds to play", least=0.0), default=None,
                   help="stop after this many seconds of simulated time (default: when the window closes)")
    return p


class Steering:
    """The commands the keys change: speed (m/s, within [low, high]) and stepping frequency (Hz, > 0)."""

    def __init__(self, speed: float, frequency: float, low: float, high: float) -> None:
        self.speed, self.frequency, self.low, self.high = speed, frequency, low, high
        self.pressed: list[int] = []

    def key(self, code: int) -> None:
        """GLFW key callback (the viewer's thread): only remember the key; :meth:`apply` acts on it."""
        self.pressed.append(code)

    def apply(self) -> None:
        while self.pressed:
            code = self.pressed.pop(0)
            if code in (KEY_UP, KEY_DOWN):
                step = SPEED_STEP if code == KEY_UP else -SPEED_STEP
                self.speed = float(np.clip(round(self.speed + step, 2), self.low, self.high))
            elif code in (KEY_RIGHT, KEY_LEFT):
                step = FREQUENCY_STEP if code == KEY_RIGHT else -FREQUENCY_STEP
                self.frequency = max(FREQUENCY_STEP, round(self.frequency + step, 2))


def load_agent(args: argparse.Namespace):
    from hydrarl.analysis.gait import cassie_agent

    agent = cassie_agent(args.agent, args.controller, args.checkpoint, "play.py")
    agent.env_cfg.vec_env = "dummy"  # the viewer draws this process's simulation
    return agent


def label(steering: Steering, speeds: deque) -> str:
    return (f"command {steering.speed:.1f} m/s   speed {np.mean(speeds) if speeds else 0.0:.2f} m/s   "
            f"gait {steering.frequency:.2f} Hz")


def play(agent, args: argparse.Namespace) -> str:
    """Run the viewer until it closes (or ``args.seconds``); returns the closing summary line."""
    import mujoco
    import mujoco.viewer

    from hydrarl.analysis.evaluate_agents import make_eval_env

    env = make_eval_env(agent, args.seed)
    cassie = env.envs[0].unwrapped
    model = agent.make_model(env, args.seed)
    low, high = float(cassie.speeds.min()), float(cassie.speeds.max())
    steering = Steering(float(np.clip(args.speed, low, high)), cassie.phase_step / cassie.dt, low, high)
    env.set_options({"speed": steering.speed})
    obs, state, starts = env.reset(), None, np.ones(1, dtype=bool)
    speeds: deque = deque(maxlen=int(round(1.0 / cassie.dt)))  # the last second of forward speeds
    steps = falls = 0
    viewer = mujoco.viewer.launch_passive(cassie.model, cassie.data, key_callback=steering.key,
                                          show_left_ui=False, show_right_ui=False)
    try:
        viewer.cam.type, viewer.cam.fixedcamid = mujoco.mjtCamera.mjCAMERA_FIXED, cassie.model.camera("track").id
        viewer.opt.geomgroup[3] = int(cassie.model.nmesh == 0)  # a model copy without meshes: its collision shapes
        started = time.perf_counter()
        while viewer.is_running() and (args.seconds is None or steps * cassie.dt < args.seconds):
            steering.apply()
            cassie.speed_command, cassie.phase_step = steering.speed, steering.frequency * cassie.dt
            action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
            obs, _, starts, infos = env.step(action)
            steps += 1
            falls += int(starts[0] and not infos[0].get("TimeLimit.truncated", False))
            if starts[0]:
                speeds.clear()
            else:
                speeds.append(infos[0]["pelvis_speed"])
            with viewer.lock():
                scene = viewer.user_scn
                scene.ngeom = 1
                above = cassie.data.qpos[:3] + np.array([0.0, 0.0, 0.7])
                mujoco.mjv_initGeom(scene.geoms[0], mujoco.mjtGeom.mjGEOM_SPHERE, np.full(3, 0.01), above,
                                    np.eye(3).flatten(), np.zeros(4, np.float32))
                scene.geoms[0].label = label(steering, speeds)
            viewer.sync()
            time.sleep(max(0.0, started + steps * cassie.dt - time.perf_counter()))  # real time
    finally:
        close_viewer(viewer)
        env.close()
    return f"played {steps * cassie.dt:.1f} s ({steps} steps, {falls} falls); last {label(steering, speeds)}"


def close_viewer(viewer) -> None:
    """Close the viewer and wait for its thread to tear its window down: otherwise GLFW's exit handler can run while
    that thread still destroys the window, and the process dies with a segmentation fault at exit."""
    import threading

    import mujoco.viewer

    viewer.close()
    for thread in threading.enumerate():
        if getattr(thread, "_target", None) is mujoco.viewer._launch_internal:  # the daemon thread launch_passive starts
            thread.join(timeout=30)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not os.environ.get("DISPLAY"):
        raise UserError("play.py opens a window and this machine has no screen (DISPLAY is not set); "
                        "record a video instead: python experiment/plot_gait.py RUN_DIR render=record.")
    print(play(load_agent(args), args), flush=True)
    return 0
