"""``algorithm=lane`` on the real PenguinPi simulator: it keeps to the road and drives on, its noise is seeded
and only stochastic, the road's offset is read from the pixels, and other envs or bad settings are refused."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from hydrarl.agents.controllers import ControllerMismatch
from hydrarl.agents.lane import LaneController, road_centre
from hydrarl.envs.penguinpi.track import FLOOR, ROAD
from hydrarl.errors import UserError

PENGUINPI = "hydrarl.envs.penguinpi:PenguinPi-v0"


@pytest.fixture(scope="module")
def env():
    made = gym.make(PENGUINPI, max_episode_steps=100)
    yield made
    made.close()


def test_the_road_offset_is_read_from_the_pixels():
    image = np.broadcast_to(FLOOR[0], (2, 4, 10, 3)).copy()
    image[0, :, 6:9] = ROAD  # road right of centre
    image[1, :, 0:2] = ROAD  # road at the left edge
    centre = road_centre(image)
    assert 0.3 < centre[0] < 0.8 and centre[1] < -0.8
    assert np.isnan(road_centre(np.broadcast_to(FLOOR[1], (1, 4, 10, 3))))[0]


def test_it_keeps_to_the_road_for_a_whole_episode_and_drives_on(env):
    lane = LaneController("CnnPolicy", env, seed=0)
    vec = lane.get_env()
    obs, state, start = vec.reset(), None, np.ones(1, bool)
    shares, distance = [], 0.0
    for _ in range(100):
        action, state = lane.predict(obs, state, start, deterministic=True)
        obs, _, done, infos = vec.step(action)
        start = done
        shares.append(infos[0]["track_share"])
        distance = infos[0].get("episode_metrics", {}).get("distance", distance)
        if done[0]:
            break
    assert len(shares) == 100 and infos[0].get("TimeLimit.truncated"), "it left the road"
    assert min(shares) > 0.3 and distance > 1.0  # on the road throughout, and metres round the loop


def test_noise_is_seeded_and_only_when_acting_stochastically(env):
    obs = env.observation_space.sample()[None].transpose(0, 3, 1, 2)  # as SB3 hands it over (channel first)
    runs = []
    for _ in range(2):
        lane = LaneController("CnnPolicy", env, noise=0.2, seed=3)
        runs.append([lane.predict(obs, deterministic=False)[0] for _ in range(3)])
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0][0], runs[0][1])
    assert np.array_equal(lane.predict(obs, deterministic=True)[0], lane.predict(obs, deterministic=True)[0])


def test_other_envs_and_bad_settings_are_refused(env):
    with pytest.raises(ControllerMismatch, match="algorithm=lane drives the PenguinPi"):
        LaneController("MlpPolicy", gym.make("Pendulum-v1"))
    with pytest.raises(UserError, match=r"algorithm.speed=1.5 \(a wheel action in \(0, 1\]\)"):
        LaneController("CnnPolicy", env, speed=1.5)
