"""Synthetic and real CarRacing frames for the controller tests (test_pid.py, test_human.py)."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

GRASS, GRASS_LIGHT, ROAD, CAR = (102, 204, 102), (102, 230, 102), (102, 102, 102), (204, 0, 0)
CAR_COLUMN = 48  # frame column of the car's nose: window column 24 of columns 24:73


def carracing_venv(n: int = 1, **kwargs) -> DummyVecEnv:
    return DummyVecEnv([lambda: Monitor(gym.make("CarRacing-v3", **kwargs))] * n)


@pytest.fixture(scope="module")
def venv():
    env = carracing_venv()
    yield env
    env.close()


def frame(road: tuple[int, int] | list[tuple[int, int]] | None) -> np.ndarray:
    """A synthetic 96x96 RGB frame: striped grass, grey road over the columns [start, stop) of each
    span (rows 0..83), the car below the band, a black dashboard."""
    f = np.zeros((96, 96, 3), dtype=np.uint8)
    f[:84] = GRASS
    f[:84:8] = GRASS_LIGHT  # the grass stripes of real frames
    for start, stop in ([] if road is None else [road] if isinstance(road[0], int) else road):
        f[:84, start:stop] = ROAD
    f[66:77, 45:51] = CAR
    return f
