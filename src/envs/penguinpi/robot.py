"""The simulated PenguinPi's body, without HTTP: wheel motors, encoders, odometry, true pose, battery, sim clock.

Physics (see docs/envs/penguinpi.md, section The simulator), all in SI units unless a name says counts:

- Wheels 65 mm in diameter, 0.156 m apart, 384 encoder counts per revolution: one count = pi * 0.065 / 384 m.
- Motor command V in [-100, 100] asks for 10 * V counts/s; |V| <= 9 is the open-loop deadband (the wheel does not turn).
  The 50 Hz velocity loop is modelled as a first-order lag of time constant ``LAG_TAU`` (0.1 s) towards that target,
  integrated exactly over 10 ms ticks, so a start from rest at command V has turned
  10 * V * (t - tau * (1 - exp(-t / tau))) counts after t seconds. A stop (``brake``) zeroes the wheel speed at once.
- Encoders: cumulative counts since the last ``reset_encoders``, reported as signed 16-bit (wrapping at +-32768).
- Odometry (what the robot reports as its pose): every 0.2 s (5 Hz), and once more when the motors stop, from the
  whole counts since the last update: theta += (dL - dR) / W, x += avg * cos(theta_mid), y += avg * sin(theta_mid),
  theta_mid = theta + dtheta / 2. theta grows when the left wheel travels further, so with x right and theta
  measured from +x, +y points to the robot's right of heading 0 (the frame the track and camera use too).
- True pose (what the camera sees): the same kinematics applied to the exact wheel motion of every tick, from the
  pose the simulator placed the robot at; odometry and true pose drift apart only through count quantisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WHEEL_DIAMETER = 0.065  # m
TRACK_WIDTH = 0.156  # m, W: distance between the wheels
COUNTS_PER_REV = 384
METRES_PER_COUNT = math.pi * WHEEL_DIAMETER / COUNTS_PER_REV
COUNTS_PER_S_PER_UNIT = 10.0  # steady-state counts/s per unit of motor command
DEADBAND = 9  # |command| <= this: the wheel does not turn
LAG_TAU = 0.1  # s, time constant of the wheel speed's first-order lag
TICK = 0.01  # s, physics step
ODOMETRY_TICKS = 20  # ticks per odometry update (5 Hz)
COMMAND_LIMIT = 100
MAX_MOVE_TIME = 600.0  # s, longest timed move (set/velocity time=T) the simulator accepts


def wrap16(count: int) -> int:
    """``count`` as a signed 16-bit register shows it: in [-32768, 32767]."""
    return (count + 32768) % 65536 - 32768


@dataclass
class Pose:
    """x, y in m; theta in rad (the real robot's convention, not wrapped)."""

    x: float = 0.0
    y: float = 0.0
    theta: float = 0.0


class Robot:
    """State of one differential-drive PenguinPi; advance it with ``step(n_ticks)``. Not thread-safe."""

    def __init__(self, rng: np.random.Generator, pose: Pose | None = None):
        self.ticks = 0  # sim clock in TICKs since construction
        self.command = (0, 0)  # motor commands (left, right)
        self._speed = np.zeros(2)  # wheel speeds, counts/s (left, right)
        self._counts = np.zeros(2)  # exact turned counts since construction, never reset
        self._encoder_zero = np.zeros(2, dtype=np.int64)  # whole counts at the last encoder reset
        self._odometry_counts = np.zeros(2, dtype=np.int64)  # whole counts at the last odometry update
        self.odometry = Pose()
        self.true_pose = pose or Pose()
        self._battery_offset = float(rng.normal(0.0, 40.0))  # mV, this robot's pack differs a little

    @property
    def time(self) -> float:
        """Sim time in s."""
        return self.ticks * TICK

    def place(self, pose: Pose) -> None:
        """Put the robot at ``pose`` at rest, with zeroed encoders and odometry."""
        self.brake()
        self.true_pose = pose
        self.reset_encoders()
        self.reset_odometry()

    def set_command(self, left: int, right: int) -> None:
        """Motor commands in [-100, 100]; the wheels approach 10 * command counts/s (0 inside the deadband)."""
        self.command = (int(left), int(right))

    def brake(self) -> None:
        """Zero both commands and stop the wheels at once, then fold the last counts into the odometry."""
        self.command = (0, 0)
        self._speed[:] = 0.0
        self._update_odometry()

    def reset_encoders(self) -> None:
        self._encoder_zero = self._whole_counts()

    def reset_odometry(self) -> None:
        self.odometry = Pose()
        self._odometry_counts = self._whole_counts()

    def encoders(self) -> tuple[int, int]:
        """(left, right) counts since the last encoder reset, signed 16-bit."""
        left, right = self._whole_counts() - self._encoder_zero
        return wrap16(int(left)), wrap16(int(right))

    def battery_mv(self) -> int:
        """Pack voltage, mV: 7.8 V less a slow drain of 0.2 mV per sim second."""
        return round(7800.0 + self._battery_offset - 0.2 * self.time)

    def battery_ma(self) -> int:
        """Current draw, mA: 300 mA idle plus the motors' load (0.25 mA per count/s per wheel)."""
        return round(300.0 + 0.25 * float(np.abs(self._speed).sum()))

    def step(self, n_ticks: int) -> None:
        """Advance the sim by ``n_ticks`` ticks of 10 ms."""
        command = np.array(self.command, dtype=float)
        target = np.where(np.abs(command) > DEADBAND, COUNTS_PER_S_PER_UNIT * command, 0.0)
        decay = math.exp(-TICK / LAG_TAU)
        for _ in range(n_ticks):
            # exact solution of dw/dt = (target - w) / tau over one tick: distance turned and the new speed
            delta = target * TICK + (self._speed - target) * LAG_TAU * (1.0 - decay)
            self._speed = target + (self._speed - target) * decay
            self._counts += delta
            self._move_true_pose(delta * METRES_PER_COUNT)
            self.ticks += 1
            if self.ticks % ODOMETRY_TICKS == 0:
                self._update_odometry()

    def _whole_counts(self) -> np.ndarray:
        return np.floor(self._counts).astype(np.int64)

    def _move_true_pose(self, wheel_metres: np.ndarray) -> None:
        _integrate(self.true_pose, float(wheel_metres[0]), float(wheel_metres[1]))

    def _update_odometry(self) -> None:
        counts = self._whole_counts()
        delta = (counts - self._odometry_counts) * METRES_PER_COUNT
        self._odometry_counts = counts
        _integrate(self.odometry, float(delta[0]), float(delta[1]))


def _integrate(pose: Pose, left: float, right: float) -> None:
    """Move ``pose`` by wheel travels ``left``, ``right`` (m) with the real robot's midpoint rule (docs/envs/penguinpi.md)."""
    dtheta = (left - right) / TRACK_WIDTH
    mid = pose.theta + dtheta / 2.0
    average = (left + right) / 2.0
    pose.x += average * math.cos(mid)
    pose.y += average * math.sin(mid)
    pose.theta += dtheta
