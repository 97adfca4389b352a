"""``PenguinPi-v0``: drive the PenguinPi round the road loop from its camera, over the robot's HTTP API.

The env talks to a robot through ``PenguinPiClient``: a real one at ``robot_url``, or (``robot_url=None``) a
simulator subprocess it starts on a loopback port the OS picks and stops on ``close``. Each step is one blocking
``set_velocity(L, R, time=step_time)`` (the robot stops after it), then one camera image.

Observation: the bottom ``crop_rows`` rows of the 240 x 320 camera image, (crop_rows, 320, 3) uint8 RGB channel-last
(SB3 transposes it); with ``include_encoders`` a Dict {"image": that, "encoders": the step's encoder ticks
(left, right) as float32}. Actions: "continuous" Box(2) in [-1, 1] -> commands round(max_speed * a); "teleop"
Discrete(9) = the users' keys (fwd, turn) in {-1, 0, 1}^2, index 3 * (fwd + 1) + (turn + 1), -> L = 20 fwd - 5 turn,
R = 20 fwd + 5 turn.

Reward per step (weights in ``reward``): track * 0.1 * tanh(50 r^4), r = share of road-grey pixels in the crop (the
users' final reward, in [0, 0.1]); - smoothness * mean over wheels of |ticks - mean ticks of the last 5 steps| /
max ticks per step (in [-2, 0]); + pose_change * odometry distance moved / longest possible move (in [0, 1]).
Terminated when r < ``offtrack_share`` (off the road); truncation comes from ``max_episode_steps``.
``info["episode_metrics"]["distance"]``: the odometry path length of the episode so far (m), which evaluation
logs as ``eval/distance``.

Safety: ``/robot/stop`` is sent on ``close()`` and whenever ``step`` raises (KeyboardInterrupt included);
``with PenguinPiEnv(...) as env:`` closes (and so stops) when the policy code inside raises.
"""

from __future__ import annotations

import math
import os
import re
import select
import subprocess
import sys
import time
from collections import deque
from urllib.parse import urlsplit

import gymnasium as gym
import numpy as np

from hydrarl.envs.penguinpi.client import PenguinPiClient, RobotError
from hydrarl.envs.penguinpi.robot import COMMAND_LIMIT, COUNTS_PER_S_PER_UNIT, DEADBAND, MAX_MOVE_TIME, METRES_PER_COUNT, wrap16
from hydrarl.envs.penguinpi.track import HEIGHT, WIDTH, start_pose, track_share
from hydrarl.errors import UserError
from hydrarl.values import is_integer, is_number

TELEOP_FORWARD = 20  # command units per unit of fwd (the users' keyboard mapping)
TELEOP_TURN = 5  # command units per unit of turn
SMOOTHNESS_WINDOW = 5  # steps in the recent mean of the smoothness term
STARTUP_TIMEOUT = 20.0  # s to wait for an owned simulator to listen


def _announced_url(process: subprocess.Popen, deadline: float) -> str:
    """The URL ``sim_server --port 0`` prints once it listens (the OS picked a free port when it bound, so two
    simulators started at once can never be handed the same one)."""
    line = b""
    while not line.endswith(b"\n"):
        if process.poll() is not None:
            raise RobotError(f"the PenguinPi simulator exited with status {process.returncode} before it listened")
        if time.monotonic() > deadline:
            raise RobotError(f"the PenguinPi simulator did not listen within {STARTUP_TIMEOUT:g} s")
        if select.select([process.stdout], [], [], 0.05)[0]:
            line += os.read(process.stdout.fileno(), 256)
    found = re.search(r"http://\S+", line.decode(errors="replace"))
    if found is None:
        raise RobotError(f"the PenguinPi simulator announced no URL: {line!r}")
    return found.group(0)


def teleop_commands(fwd: int, turn: int) -> tuple[int, int]:
    """The users' key map: wheel commands (L, R) of ``fwd, turn`` in {-1, 0, 1}."""
    return TELEOP_FORWARD * fwd - TELEOP_TURN * turn, TELEOP_FORWARD * fwd + TELEOP_TURN * turn


def check_kwargs(**kwargs: object) -> None:
    """A UserError naming the first ``env.kwargs.<key>`` whose value the robot would refuse or that makes no env,
    with what is allowed; run when the env is built, before a simulator starts or a request is sent."""
    url = kwargs.get("robot_url")
    parsed = urlsplit(url) if isinstance(url, str) else None
    rules = {
        "robot_url": (url is None or (parsed is not None and parsed.scheme in ("http", "https") and bool(parsed.hostname)),
                      "null (start a simulator) or the robot's address, http://<host>:<port>"),
        "sim_speedup": (is_number(kwargs.get("sim_speedup"), finite=True) and kwargs["sim_speedup"] >= 0,
                        "a number >= 0 (sim s per wall s; 0: as fast as possible)"),
        "sim_seed": (is_integer(kwargs.get("sim_seed")) and kwargs["sim_seed"] >= 0, "an integer >= 0"),
        "step_time": (is_number(kwargs.get("step_time"), finite=True) and 0 < kwargs["step_time"] <= MAX_MOVE_TIME,
                      f"seconds of driving per action, a number in (0, {MAX_MOVE_TIME:g}]"),
        "actions": (kwargs.get("actions") in ("continuous", "teleop"), "continuous | teleop"),
        "max_speed": (is_integer(kwargs.get("max_speed")) and DEADBAND < kwargs["max_speed"] <= COMMAND_LIMIT,
                      f"an integer in {DEADBAND + 1}..{COMMAND_LIMIT} (wheel commands lie in [-{COMMAND_LIMIT}, "
                      f"{COMMAND_LIMIT}]; |command| <= {DEADBAND} does not move)"),
        "crop_rows": (is_integer(kwargs.get("crop_rows")) and 0 < kwargs["crop_rows"] <= HEIGHT,
                      f"an integer in 1..{HEIGHT} (image rows kept)"),
        "offtrack_share": (is_number(kwargs.get("offtrack_share"), finite=True) and 0 <= kwargs["offtrack_share"] <= 1,
                           "a share of the image in [0, 1]"),
        "timeout": (is_number(kwargs.get("timeout"), finite=True) and kwargs["timeout"] > 0, "seconds per request, a number > 0"),
    }
    for key, (ok, allowed) in rules.items():
        if key in kwargs and not ok:
            raise UserError(f"env.kwargs.{key}={kwargs[key]!r} is not allowed: {allowed}.")


class PenguinPiEnv(gym.Env):
    """Camera-based driving of a (simulated) PenguinPi; see the module doc for spaces, reward and safety."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        robot_url: str | None = None,
        sim_speedup: float = 0.0,
        sim_seed: int = 0,
        step_time: float = 0.2,
        actions: str = "continuous",
        max_speed: int = 40,
        crop_rows: int = 80,
        include_encoders: bool = False,
        reward: dict | None = None,
        offtrack_share: float = 0.05,
        timeout: float = 5.0,
        render_mode: str | None = None,
    ):
        """``robot_url``: robot to drive, None: start a simulator (``sim_speedup`` sim s per wall s, 0: as fast as
        possible; ``sim_seed`` its seed). ``step_time``: s per action. ``max_speed``: command of a continuous action
        1. ``crop_rows``: bottom image rows observed. ``reward``: weights {track, smoothness, pose_change} (missing
        keys: 1, 0, 1). ``offtrack_share``: road share below which the episode ends. ``timeout``: s per request."""
        check_kwargs(robot_url=robot_url, sim_speedup=sim_speedup, sim_seed=sim_seed, step_time=step_time, actions=actions,
                     max_speed=max_speed, crop_rows=crop_rows, offtrack_share=offtrack_share, timeout=timeout)
        if render_mode not in (None, "rgb_array"):
            raise UserError(f"render_mode={render_mode!r} is not allowed for PenguinPi: null | rgb_array.")
        self.step_time = step_time
        self.actions = actions
        self.max_speed = max_speed
        self.crop_rows = crop_rows
        self.include_encoders = include_encoders
        self.weights = {"track": 1.0, "smoothness": 0.0, "pose_change": 1.0, **(reward or {})}
        self.offtrack_share = offtrack_share
        self.render_mode = render_mode
        image_space = gym.spaces.Box(0, 255, (crop_rows, WIDTH, 3), np.uint8)
        self.max_ticks = COUNTS_PER_S_PER_UNIT * (max_speed if actions == "continuous" else TELEOP_FORWARD + TELEOP_TURN) * step_time
        if include_encoders:
            bound = 2.0 * self.max_ticks + 10.0  # counts per step; the sim never passes max_ticks, a real robot may
            self.observation_space = gym.spaces.Dict(
                {"image": image_space, "encoders": gym.spaces.Box(-bound, bound, (2,), np.float32)}
            )
        else:
            self.observation_space = image_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if actions == "continuous" else gym.spaces.Discrete(9)
        self._process: subprocess.Popen | None = None
        self._closed = False
        if robot_url is None:
            robot_url = self._start_simulator(sim_speedup, sim_seed)
        self.client = PenguinPiClient(robot_url, timeout=timeout)
        self.is_simulator = self._probe_simulator()
        self._image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        self._encoders = (0, 0)
        self._pose = (0.0, 0.0)  # odometry x, y (m) after the last step
        self._distance = 0.0  # odometry path length of this episode (m)
        self._recent: deque[np.ndarray] = deque(maxlen=SMOOTHNESS_WINDOW)

    def _start_simulator(self, speedup: float, seed: int) -> str:
        """Start ``sim_server`` on a loopback port the OS picks; its URL, once it listens (the server prints it
        after binding, so the first request is served; ``_probe_simulator`` makes it)."""
        command = [sys.executable, "-m", "hydrarl.envs.penguinpi.sim_server", "--port", "0", "--seed", str(seed),
                   "--speedup", str(speedup), "--parent", str(os.getpid())]  # it ends when this process does
        self._process = process = subprocess.Popen(command, stdout=subprocess.PIPE)
        try:
            return _announced_url(process, time.monotonic() + STARTUP_TIMEOUT)
        except BaseException:
            self._stop_process()
            raise
        finally:
            process.stdout.close()  # it prints nothing after the URL

    def _probe_simulator(self) -> bool:
        """Whether the robot is a simulator (serves /sim/state); a real robot answers 404."""
        try:
            self.client.sim_state()
            return True
        except RobotError as exc:
            if "HTTP 404" in str(exc):
                return False
            self.close()
            raise

    def _command(self, action) -> tuple[int, int]:
        """Wheel commands (L, R) of an action."""
        if self.actions == "teleop":
            forward, turn = divmod(int(action), 3)
            forward, turn = forward - 1, turn - 1
            return teleop_commands(forward, turn)
        left, right = np.clip(np.asarray(action, dtype=float).reshape(2), -1.0, 1.0)
        return round(self.max_speed * left), round(self.max_speed * right)

    def _observe(self, ticks: np.ndarray):
        self._image = self.client.get_image()
        crop = self._image[-self.crop_rows:]
        observation = {"image": crop, "encoders": ticks.astype(np.float32)} if self.include_encoders else crop
        return observation, track_share(crop)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.client.stop()
        if self.is_simulator:
            self.client.sim_reset(*start_pose(self.np_random))
        else:  # a real robot: someone puts it on the track; start counting afresh
            self.client.reset_encoders()
            self.client.reset_pose()
        self._encoders = self.client.get_encoders()
        pose = self.client.get_pose()
        self._pose = pose[:2]
        self._distance = 0.0
        self._recent.clear()
        observation, share = self._observe(np.zeros(2))
        return observation, {"track_share": share, "pose": tuple(pose)}  # as each step's info has them

    def step(self, action):
        try:
            return self._step(action)
        except BaseException:
            self._safe_stop()
            raise

    def _step(self, action):
        left, right = self._command(action)
        state = self.client.set_velocity(left, right, time=self.step_time)
        ticks = np.array([wrap16(state.left - self._encoders[0]), wrap16(state.right - self._encoders[1])], dtype=float)
        self._encoders = (state.left, state.right)
        observation, share = self._observe(ticks)
        moved = math.hypot(state.x - self._pose[0], state.y - self._pose[1])
        reward = self._reward(share, ticks, moved, self._recent)
        self._pose = (state.x, state.y)
        self._distance += moved
        info = {"track_share": share, "command": (left, right), "pose": (state.x, state.y, state.theta),
                "episode_metrics": {"distance": self._distance}}
        return observation, float(reward), share < self.offtrack_share, False, info

    def _reward(self, share: float, ticks: np.ndarray | None, moved: float, recent: deque) -> float:
        """The reward of a step that ended with road share ``share`` and wheel ``ticks`` (counts; None: not known,
        no smoothness term) after moving ``moved`` m; ``recent``: the ticks of the steps before (appended to)."""
        reward = self.weights["track"] * 0.1 * math.tanh(50.0 * share**4)
        if ticks is not None:
            if recent:
                deviation = np.abs(ticks - np.mean(recent, axis=0)).mean()
                reward -= self.weights["smoothness"] * deviation / self.max_ticks
            recent.append(ticks)
        return reward + self.weights["pose_change"] * moved / (self.max_ticks * METRES_PER_COUNT)

    def episode_rewards(self, observations, infos: dict[str, np.ndarray]) -> np.ndarray:
        """The rewards this env (its reward weights) pays for a recorded episode: ``observations`` (steps + 1
        of them: the camera crops, or a dict with ``image`` and, for the smoothness term, ``encoders``) and
        ``infos["pose"]`` ((steps + 1, 3): odometry x, y (m), θ). What offline training uses for a dataset
        recorded without rewards, or with other weights. A UserError when the episode lacks what is needed."""
        images = observations["image"] if isinstance(observations, dict) else observations
        ticks = observations.get("encoders") if isinstance(observations, dict) else None
        if "pose" not in infos:
            raise UserError("the PenguinPi reward needs each step's odometry pose (infos['pose']); this episode has none.")
        if self.weights["smoothness"] and ticks is None:
            raise UserError("the PenguinPi reward's smoothness term needs the wheel ticks: record with "
                            "env.kwargs.include_encoders=true, or set env.kwargs.reward.smoothness=0.")
        poses = np.asarray(infos["pose"], dtype=float)
        recent: deque[np.ndarray] = deque(maxlen=SMOOTHNESS_WINDOW)
        return np.array([self._reward(track_share(images[t + 1]), None if ticks is None else np.asarray(ticks[t + 1], float),
                                      math.hypot(*(poses[t + 1, :2] - poses[t, :2])), recent)
                         for t in range(len(images) - 1)], dtype=np.float64)

    def render(self):
        return self._image.copy() if self.render_mode == "rgb_array" else None

    def _safe_stop(self) -> None:
        """Send /robot/stop; failures are swallowed (already failing or closing; the robot may be gone)."""
        try:
            self.client.stop()
        except RobotError:
            pass

    def _stop_process(self) -> None:
        """Terminate the owned simulator: SIGTERM, then kill if it has not exited within 5 s."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def close(self) -> None:
        """Stop the robot, close the connection and the owned simulator; safe to call again."""
        if self._closed:
            return
        self._closed = True
        if hasattr(self, "client"):
            self._safe_stop()
            self.client.close()
        self._stop_process()
