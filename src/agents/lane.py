"""``algorithm=lane``: a scripted PenguinPi driver that follows the road from the camera, and learns nothing.

It sees what the robot's policy sees, the bottom rows of the camera image, and keeps the road in the middle of
them: ``centre`` = the mean column of road-grey pixels (the same grey test as the env's reward), -1 at the left
edge of the image, +1 at the right. Wheel commands, as the env's continuous actions in [-1, 1]:

    left = speed + gain * centre,  right = speed - gain * centre

(the left wheel faster turns the robot right, towards a road that lies right of centre). With no road in view it
turns on the spot towards the side where it last saw it. ``noise`` adds N(0, noise²) to each wheel when acting
stochastically (``deterministic=False``: while collecting data or training), so datasets of known quality can be
recorded without a person (``experiment/collect.py collector=scripted``); evaluation acts without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv

from hydrarl.agents.controllers import Controller, ControllerMismatch
from hydrarl.errors import UserError


def road_centre(images: np.ndarray) -> np.ndarray:
    """Per image of a batch (B, H, W, 3) uint8 RGB: the mean column of road-grey pixels in [-1, 1], NaN when none."""
    pixels = images.astype(np.int16)
    chroma = pixels.max(axis=-1) - pixels.min(axis=-1)
    brightness = pixels.mean(axis=-1)
    grey = (chroma < 20) & (brightness > 70) & (brightness < 160)  # hydrarl.envs.penguinpi.track.track_share's test
    columns = np.linspace(-1.0, 1.0, images.shape[2])
    count = grey.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (grey * columns).sum(axis=(1, 2)) / count, np.nan)


class LaneController(Controller):
    """Follows the road in the PenguinPi's camera crop (see the module). ``speed``: both wheels' action in (0, 1];
    ``gain``: action difference per unit of road offset; ``noise``: std of the per-wheel action noise when acting
    stochastically."""

    def __init__(
        self,
        policy: str | type[BasePolicy] = "CnnPolicy",
        env: GymEnv | str | None = None,
        speed: float = 0.9,
        gain: float = 0.6,
        noise: float = 0.0,
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        self.speed, self.gain, self.noise = float(speed), float(gain), float(noise)
        super().__init__(policy, env, seed=seed, device=device, verbose=verbose, _init_setup_model=_init_setup_model)

    def _setup_controller(self) -> None:
        obs = self.observation_space
        image = obs.spaces.get("image") if isinstance(obs, spaces.Dict) else obs
        act = self.action_space
        if not (isinstance(image, spaces.Box) and image.dtype == np.uint8 and len(image.shape) == 3 and 3 in (image.shape[0], image.shape[-1])
                and isinstance(act, spaces.Box) and act.shape == (2,)):
            raise ControllerMismatch(
                "algorithm=lane drives the PenguinPi from its camera: it needs RGB image observations (or a Dict with an "
                f"'image') and two wheel actions, Box(2); this env gives observations {self.observation_space} and actions "
                f"{act}: use env=PenguinPi with env.kwargs.actions=continuous.")
        self._channel_first = image.shape[0] == 3 and image.shape[-1] != 3
        bad = [f"algorithm.{name}={value} ({allowed})" for name, value, ok, allowed in (
            ("speed", self.speed, 0 < self.speed <= 1, "a wheel action in (0, 1]"),
            ("gain", self.gain, 0 <= self.gain <= 2, "a number in [0, 2]"),
            ("noise", self.noise, 0 <= self.noise <= 1, "a standard deviation in [0, 1]"))
            if not ok]
        if bad:
            raise UserError(f"algorithm=lane: bad settings: {'; '.join(bad)}.")
        self._rng = np.random.default_rng()

    def _seed_controller(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def _act(self, observation, state: Any, episode_start: np.ndarray, deterministic: bool):
        images = np.asarray(observation["image"] if isinstance(observation, dict) else observation)
        if self._channel_first:
            images = images.transpose(0, 2, 3, 1)
        n = images.shape[0]
        last = np.ones(n) if state is None or np.shape(state) != (n,) else np.array(state, dtype=np.float64)
        last[np.asarray(episode_start, dtype=bool)] = 1.0  # side of the last road seen: none yet, turn right
        centre = road_centre(images)
        seen = ~np.isnan(centre)
        last[seen] = np.sign(centre[seen]) + (centre[seen] == 0)
        steer = np.where(seen, self.gain * np.nan_to_num(centre), self.speed * last)  # lost: turn on the spot
        forward = np.where(seen, self.speed, 0.0)
        actions = np.stack([forward + steer, forward - steer], axis=1)
        if not deterministic and self.noise > 0:
            actions = actions + self._rng.normal(0.0, self.noise, actions.shape)
        return np.clip(actions, -1.0, 1.0).astype(np.float32), last
