"""A PID controller that drives CarRacing from its RGB frames (our users' PID baseline, in numpy).

Error signal. A band of rows just ahead of the car (``rows``, default 63:65) and a window of
columns around it (``columns``, default 24:73: 49 columns, the car's nose at column 24 of the
window, column 48 of the frame) is read from the frame. A pixel is grass when its HSV colour lies
in ``[green_low, green_high]`` (OpenCV's convention: H in 0..180, S and V in 0..255, bounds
inclusive; the users' (36, 25, 25)..(70, 255, 255)); a column is grass when at least
``grass_fraction`` of its band pixels are. Everything else (grey road, red and white kerbs) is road.
The edges are where grass and road meet along the band: ``left`` = the smallest, ``right`` = the
largest edge position, each given as the road-side column, and

    error = (left + right) / 2 - centre          (centre = 24, window coordinates)

so the error is the road centre's offset from the car, positive when the road lies to the right.

Fall-backs (the users'): with one edge, the previous error is kept if it lies in the open
interval ``keep_previous`` (20, 30), else the error is ``one_edge_error`` (15) towards the road
(+15 when the road lies right of the edge, -15 when left); with no edge (all grass or all road) the
error is ``no_edge_error`` (-15, a left turn: tracks run counter-clockwise).

This replaces the users' OpenCV pipeline (grey -> 5x5 blur -> Canny on the green mask; min/max edge
x): on these flat-coloured frames the mask's grass/road transitions are the edges Canny finds.

Action. ``steer = kp*e + ki*(e + e_prev) + kd*(e - e_prev)`` (the users' form and gains 0.02, 0.03,
0.2), clipped to [-1, 1]. CarRacing's steer is -1 = full left, +1 = full right, and the view turns
with the car (it points up in the frame), so a positive error (road to the right) steers right.
Gas follows ``gas_pattern`` step by step from each episode's start (default [1, 0]: alternate full
gas and none); brake is ``brake`` (0).

Memory. ``e_prev`` and the step within the episode live in ``state`` (an (n_envs, 2) array), reset
where ``episode_start`` is true: several env copies, ``evaluate.py`` and the Trainer's evaluation
each keep their own. The controller holds no other state and draws no random numbers.

Spaces. Observations must be (96, 96, 3) uint8 RGB frames (channel-first after SB3's transpose
is fine) and actions Box(3) = (steer, gas, brake): ``env=CarRacingContinuous``. Anything else is a
:class:`ControllerMismatch` (a UserError) at construction.
"""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv

from hydrarl.agents.controllers import Controller, ControllerMismatch
from hydrarl.errors import UserError

FRAME_SHAPE = (96, 96, 3)
STEER_LOW, STEER_HIGH = -1.0, 1.0


def _describe(space: spaces.Space) -> str:
    if isinstance(space, spaces.Box):
        return f"Box(shape={space.shape}, dtype={space.dtype})"
    return str(space)


def check_carracing_spaces(observation_space: spaces.Space, action_space: spaces.Space, who: str) -> None:
    """ControllerMismatch unless the spaces are CarRacing's RGB frames and Box(3) (steer, gas, brake)."""
    obs_ok = (isinstance(observation_space, spaces.Box) and observation_space.dtype == np.uint8
              and observation_space.shape in (FRAME_SHAPE, (FRAME_SHAPE[2], *FRAME_SHAPE[:2])))
    act_ok = (isinstance(action_space, spaces.Box) and action_space.shape == (3,)
              and np.allclose(action_space.low, [-1, 0, 0]) and np.allclose(action_space.high, [1, 1, 1]))
    if obs_ok and act_ok:
        return
    problems = []
    if not obs_ok:
        problems.append(f"observations {_describe(observation_space)}")
    if not act_ok:
        problems.append(f"actions {action_space}")
    raise ControllerMismatch(
        f"{who} drives CarRacing with continuous controls: it needs (96, 96, 3) uint8 RGB frames and "
        f"Box(3) actions (steer -1..1, gas 0..1, brake 0..1), but this env has {' and '.join(problems)}. "
        f"Use env=CarRacingContinuous (env=CarRacing is the grayscale, discrete-action pipeline for DQN)."
    )


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> float HSV in OpenCV's 8-bit convention: H in [0, 180), S and V in [0, 255]."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    spread = v - x.min(axis=-1)
    s = np.where(v > 0, 255.0 * spread / np.maximum(v, 1e-6), 0.0)
    d = np.maximum(spread, 1e-6)
    h = np.where(v == r, 60.0 * (g - b) / d, np.where(v == g, 120.0 + 60.0 * (b - r) / d, 240.0 + 60.0 * (r - g) / d))
    h = np.where(spread > 0, np.mod(h, 360.0), 0.0) / 2.0
    return np.stack([h, s, v], axis=-1)


class PIDController(Controller):
    """Steers towards the road centre seen in a band of pixels ahead of the car (see module doc).

    ``rows``/``columns``: [start, stop) of the band in the frame; ``centre``: the car's column in
    the band's window; ``green_low``/``green_high``: HSV bounds of grass (OpenCV convention);
    ``grass_fraction``: share of a column's band pixels that must be grass for the column to count
    as grass; ``kp``/``ki``/``kd``: gains; ``keep_previous``: (low, high), with one edge the
    previous error is kept when low < e_prev < high; ``one_edge_error``: the error's magnitude
    otherwise (sign: towards the road); ``no_edge_error``: the error without edges;
    ``gas_pattern``: gas per step, cycled from each episode's start; ``brake``: brake every step.
    """

    def __init__(
        self,
        policy: str | type[BasePolicy] = "CnnPolicy",
        env: GymEnv | str | None = None,
        kp: float = 0.02,
        ki: float = 0.03,
        kd: float = 0.2,
        rows: list[int] | tuple[int, int] = (63, 65),
        columns: list[int] | tuple[int, int] = (24, 73),
        centre: float = 24.0,
        green_low: list[float] | tuple[float, float, float] = (36, 25, 25),
        green_high: list[float] | tuple[float, float, float] = (70, 255, 255),
        grass_fraction: float = 0.5,
        keep_previous: list[float] | tuple[float, float] = (20.0, 30.0),
        one_edge_error: float = 15.0,
        no_edge_error: float = -15.0,
        gas_pattern: list[float] | tuple[float, ...] = (1.0, 0.0),
        brake: float = 0.0,
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        # plain lists and floats: SB3's save stores them as JSON, so a loaded model has the same values
        self.kp, self.ki, self.kd = float(kp), float(ki), float(kd)
        self.rows, self.columns = [int(r) for r in rows], [int(c) for c in columns]
        self.centre = float(centre)
        self.green_low, self.green_high = [float(v) for v in green_low], [float(v) for v in green_high]
        self.grass_fraction = float(grass_fraction)
        self.keep_previous = [float(v) for v in keep_previous]
        self.one_edge_error, self.no_edge_error = float(one_edge_error), float(no_edge_error)
        self.gas_pattern = [float(g) for g in gas_pattern]
        self.brake = float(brake)
        super().__init__(policy, env, seed=seed, device=device, verbose=verbose, _init_setup_model=_init_setup_model)

    # -- settings ---------------------------------------------------------------------------------
    def _setup_controller(self) -> None:
        check_carracing_spaces(self.observation_space, self.action_space, "algorithm=pid (PIDController)")
        bad = []
        if len(self.rows) != 2 or not 0 <= self.rows[0] < self.rows[1] <= FRAME_SHAPE[0]:
            bad.append(f"algorithm.rows={list(self.rows)} (give [start, stop) with 0 <= start < stop <= 96)")
        if len(self.columns) != 2 or not 0 <= self.columns[0] < self.columns[1] <= FRAME_SHAPE[1]:
            bad.append(f"algorithm.columns={list(self.columns)} (give [start, stop) with 0 <= start < stop <= 96)")
        if len(self.green_low) != 3 or len(self.green_high) != 3:
            bad.append("algorithm.green_low/green_high (give three HSV values each)")
        if not 0.0 < self.grass_fraction <= 1.0:
            bad.append(f"algorithm.grass_fraction={self.grass_fraction} (give a share in (0, 1])")
        if len(self.keep_previous) != 2:
            bad.append(f"algorithm.keep_previous={list(self.keep_previous)} (give [low, high])")
        if not self.gas_pattern or not all(0.0 <= g <= 1.0 for g in self.gas_pattern):
            bad.append(f"algorithm.gas_pattern={list(self.gas_pattern)} (give a non-empty list of values in [0, 1])")
        if not 0.0 <= self.brake <= 1.0:
            bad.append(f"algorithm.brake={self.brake} (give a value in [0, 1])")
        if bad:
            raise UserError(f"algorithm=pid: bad settings: {'; '.join(bad)}.")

    # -- perception -------------------------------------------------------------------------------
    def frames_hwc(self, observation: np.ndarray) -> np.ndarray:
        """A batch of frames as (n, 96, 96, 3), whatever the layout of the model's observation space."""
        obs = np.asarray(observation)
        return obs.transpose(0, 2, 3, 1) if obs.shape[1:] == (FRAME_SHAPE[2], *FRAME_SHAPE[:2]) else obs

    def grass_columns(self, frame: np.ndarray) -> np.ndarray:
        """Boolean per column of the band's window: True where the column is grass."""
        band = frame[self.rows[0]:self.rows[1], self.columns[0]:self.columns[1]]
        hsv = rgb_to_hsv(band)
        green = np.all((hsv >= np.asarray(self.green_low)) & (hsv <= np.asarray(self.green_high)), axis=-1)
        return green.mean(axis=0) >= self.grass_fraction

    def find_edges(self, frame: np.ndarray) -> list[tuple[int, int]]:
        """The road's edges along the band, left to right: ``(column, side)`` at each grass/road
        transition, ``column`` the road-side column of the window (the first road column after
        grass, the last road column before grass), ``side`` +1 if the road lies right of it, -1 if left."""
        grass = self.grass_columns(frame)
        edges = []
        for i in np.flatnonzero(grass[1:] != grass[:-1]):
            i = int(i)
            edges.append((i + 1, 1) if grass[i] else (i, -1))  # grass -> road: road starts at i+1; road -> grass: ends at i
        return edges

    def error(self, frame: np.ndarray, previous: float) -> float:
        """The error of one (96, 96, 3) frame given the previous error (see module doc)."""
        edges = self.find_edges(frame)
        if len(edges) >= 2:
            return (min(c for c, _ in edges) + max(c for c, _ in edges)) / 2.0 - self.centre
        if len(edges) == 1:
            low, high = self.keep_previous
            if low < previous < high:
                return float(previous)
            return edges[0][1] * abs(self.one_edge_error)
        return self.no_edge_error

    # -- acting -----------------------------------------------------------------------------------
    def _act(self, observation, state, episode_start, deterministic):
        frames = self.frames_hwc(observation)
        n = frames.shape[0]
        if state is None or np.shape(state) != (n, 2):
            state = np.zeros((n, 2))
        state = np.array(state, dtype=np.float64)
        state[np.asarray(episode_start, dtype=bool)] = 0.0  # [previous error, step within the episode]
        actions = np.zeros((n, 3), dtype=np.float32)
        for i in range(n):
            previous, step = state[i]
            e = self.error(frames[i], previous)
            steer = self.kp * e + self.ki * (e + previous) + self.kd * (e - previous)
            actions[i] = (np.clip(steer, STEER_LOW, STEER_HIGH), self.gas_pattern[int(step) % len(self.gas_pattern)], self.brake)
            state[i] = (e, step + 1)
        return actions, state
