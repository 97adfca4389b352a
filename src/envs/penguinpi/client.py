"""Typed HTTP client of the PenguinPi robot's API (real robot or ``sim_server``; see docs/envs/penguinpi.md, section The robot's HTTP API).

Connection errors (refused, reset, connect timeout) are retried a bounded number of times with a short back-off,
since nothing reached the robot; read timeouts and HTTP errors are not, since the robot may have acted (a
motion must never run twice). Every failure is a ``RobotError`` naming the URL, the endpoint and the cause.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import requests
from PIL import Image

from hydrarl.errors import UserError

BACKOFF = 0.1  # s before the first retry, doubled for each further one


class RobotError(UserError):
    """A robot request failed: unreachable, timed out, or answered with an HTTP error."""


@dataclass(frozen=True)
class RobotState:
    """What set/velocity and stop answer: encoder counts (signed 16-bit) and the odometry pose (m, m, rad)."""

    left: int
    right: int
    x: float
    y: float
    theta: float


class PenguinPiClient:
    """One robot at ``url`` (e.g. ``http://127.0.0.1:8080``); ``timeout`` s per request on top of a move's time,
    ``retries`` extra attempts on connection errors."""

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment: the robot is on the local network or loopback

    def _get(self, endpoint: str, params: dict | None = None, extra_time: float = 0.0) -> requests.Response:
        """GET ``endpoint``; ``extra_time`` s (a blocking move) is added to the read timeout."""
        where = f"{self.url}{endpoint}"
        for attempt in range(self.retries + 1):
            try:
                response = self._session.get(where, params=params, timeout=(self.timeout, self.timeout + extra_time))
                break
            except requests.ConnectionError as exc:
                if attempt == self.retries:
                    raise RobotError(f"PenguinPi at {self.url} unreachable on {endpoint} after {attempt + 1} attempts "
                                     f"(connection refused or lost): {exc}") from exc
                time.sleep(BACKOFF * 2**attempt)
            except requests.Timeout as exc:
                raise RobotError(f"PenguinPi at {self.url} timed out on {endpoint} "
                                 f"(no answer within {self.timeout + extra_time:g} s)") from exc
        if response.status_code >= 400:
            try:
                message = response.json()["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise RobotError(f"PenguinPi at {self.url} answered HTTP {response.status_code} on {endpoint}: {message}")
        return response

    def _state(self, response: requests.Response) -> RobotState:
        body = response.json()
        return RobotState(body["encoder"]["left"], body["encoder"]["right"], body["pose"]["x"], body["pose"]["y"],
                          body["pose"]["theta"])

    def set_velocity(self, left: int, right: int, time: float | None = None, accel: float | None = None) -> RobotState:
        """Motor commands in [-100, 100]; with ``time`` (s) block while the robot drives, then it stops (``accel``:
        s of linear ramp at each end); without, the speed persists."""
        params: dict = {"value": f"{int(left)},{int(right)}"}
        if time is not None:
            params["time"] = time
        if accel is not None:
            params["accel"] = accel
        return self._state(self._get("/robot/set/velocity", params, extra_time=time or 0.0))

    def stop(self) -> RobotState:
        return self._state(self._get("/robot/stop"))

    def get_encoders(self) -> tuple[int, int]:
        """(left, right) cumulative counts, signed 16-bit."""
        left, right = self._get("/robot/get/encoder").text.split(",")
        return int(left), int(right)

    def reset_encoders(self) -> None:
        self._get("/robot/hw/reset")

    def reset_pose(self) -> None:
        self._get("/robot/pose/reset")

    def get_pose(self) -> tuple[float, float, float]:
        """Odometry (x m, y m, theta rad)."""
        x, y, theta = self._get("/robot/get/pose").text.split(",")
        return float(x), float(y), float(theta)

    def get_image(self) -> np.ndarray:
        """The camera image, (240, 320, 3) uint8 RGB."""
        with Image.open(io.BytesIO(self._get("/camera/get").content)) as image:
            return np.asarray(image.convert("RGB"))

    def battery_voltage(self) -> int:
        """mV."""
        return int(float(self._get("/battery/get/voltage").text))

    def battery_current(self) -> int:
        """mA."""
        return int(float(self._get("/battery/get/current").text))

    def sim_reset(self, x: float | None = None, y: float | None = None, theta: float | None = None) -> None:
        """Simulator only: place the robot at (x m, y m, theta rad), or at a random start on the track when all are
        None; motors, encoders and odometry zeroed."""
        params = None if x is None and y is None and theta is None else {"x": x, "y": y, "theta": theta}
        self._get("/sim/reset", params)

    def sim_state(self) -> dict:
        """Simulator only: {"time": s, "command": [L, R], "stops": n, "true_pose": {"x", "y", "theta"}}."""
        return self._get("/sim/state").json()

    def close(self) -> None:
        self._session.close()
