"""A human at the keyboard drives CarRacing (our users' "human" row): ``algorithm=human``.

Each step the controller shows the frame its env gave (the agent's own 96x96 view, scaled up
``scale`` times in a pygame window), reads the arrow keys and returns the action:

- left / right arrow: steer -``steer`` / +``steer`` (both or neither: straight)
- up arrow: gas ``gas``; down arrow: brake ``brake``
- Escape or closing the window: SIGINT to this process, i.e. what Ctrl-C does (the Trainer stops
  gracefully at the next step and keeps its checkpoint; ``evaluate.py`` stops).

Steps are paced at ``fps`` (default 50, CarRacing's own rate) so the game runs at real-time speed.
``learn`` is the human driving (the Controller's learn steps the env with these actions) and
``experiment/evaluate.py --controller CarRacingContinuous/human --episodes 5`` plays scored episodes.

It needs a screen and a keyboard: on a machine without a display (no ``DISPLAY`` /
``WAYLAND_DISPLAY`` on Linux, or ``SDL_VIDEODRIVER=dummy``/``offscreen``) construction is a
UserError. Only CarRacing's RGB frames with Box(3) actions (``env=CarRacingContinuous``), and one
env copy (one car), are accepted. The window is opened at the first step and is not saved.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv

from hydrarl.agents.controllers import Controller, ControllerMismatch
from hydrarl.agents.pid import FRAME_SHAPE, check_carracing_spaces
from hydrarl.errors import MissingDependency, UserError

REAL_DRIVERS_WITHOUT_X = {"kmsdrm", "fbcon", "directfb", "wayland", "windows", "cocoa"}


def display_problem() -> str | None:
    """Why no window can open here, or None when a screen seems available."""
    driver = os.environ.get("SDL_VIDEODRIVER", "").strip().lower()
    if sys.platform.startswith("linux") and driver not in REAL_DRIVERS_WITHOUT_X:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return "no DISPLAY (or WAYLAND_DISPLAY) is set, so there is no screen to open a window on"
    if driver in ("dummy", "offscreen"):
        return (f"SDL_VIDEODRIVER={driver} turns the screen off (unset it, or set your video driver, "
                "e.g. SDL_VIDEODRIVER=x11 or wayland)")
    return None


def headless_message(reason: str) -> str:
    return (f"algorithm=human needs a screen and a keyboard: {reason}. Run it on a machine with a display "
            "(e.g. python experiment/evaluate.py --controller CarRacingContinuous/human --episodes 5), "
            "or use algorithm=pid for a controller that drives by itself.")


class HumanController(Controller):
    """Keyboard driving in a pygame window (see module doc). ``scale``: window size = 96 x scale
    pixels; ``fps``: steps per second (0: as fast as the machine goes); ``steer``/``gas``/``brake``:
    the action values of the arrow keys."""

    def __init__(
        self,
        policy: str | type[BasePolicy] = "CnnPolicy",
        env: GymEnv | str | None = None,
        scale: int = 6,
        fps: float = 50.0,
        steer: float = 1.0,
        gas: float = 1.0,
        brake: float = 0.8,
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        self.scale, self.fps = int(scale), float(fps)
        self.steer, self.gas, self.brake = float(steer), float(gas), float(brake)
        self._window = self._clock = None
        super().__init__(policy, env, seed=seed, device=device, verbose=verbose, _init_setup_model=_init_setup_model)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_window", "_clock"]

    def _setup_controller(self) -> None:
        check_carracing_spaces(self.observation_space, self.action_space, "algorithm=human (HumanController)")
        if self.n_envs != 1:
            raise UserError(f"algorithm=human drives one car, but the env has {self.n_envs} copies: give env.n_envs=1.")
        if self.scale < 1 or self.fps < 0:
            raise UserError(f"algorithm=human: scale={self.scale} and fps={self.fps:g} must be >= 1 and >= 0.")
        reason = display_problem()
        if reason:
            raise ControllerMismatch(headless_message(reason))
        self._window = self._clock = None

    # -- the window ---------------------------------------------------------------------------------
    def _pygame(self):
        try:
            import pygame
        except ImportError as exc:
            raise MissingDependency("algorithm=human", "pygame") from exc
        if self._window is None:
            try:
                pygame.init()
                side = FRAME_SHAPE[0] * self.scale
                self._window = pygame.display.set_mode((side, side))
            except pygame.error as exc:
                raise ControllerMismatch(headless_message(f"pygame cannot open a window ({exc})")) from exc
            pygame.display.set_caption("hydrarl: arrows steer / gas / brake, Esc quits")
            self._clock = pygame.time.Clock()
        return pygame

    def show(self, frame: np.ndarray) -> None:
        """Draw one (96, 96, 3) frame, scaled up, in the window."""
        pygame = self._pygame()
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self._window.blit(pygame.transform.scale(surface, self._window.get_size()), (0, 0))
        pygame.display.flip()

    def read_keys(self) -> np.ndarray:
        """The action the arrow keys held now ask for; Escape or a closed window sends SIGINT."""
        pygame = self._pygame()
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                signal.raise_signal(signal.SIGINT)
        keys = pygame.key.get_pressed()
        steer = self.steer * (float(keys[pygame.K_RIGHT]) - float(keys[pygame.K_LEFT]))
        return np.array([steer, self.gas * keys[pygame.K_UP], self.brake * keys[pygame.K_DOWN]], dtype=np.float32)

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = self._clock = None

    def _act(self, observation, state, episode_start, deterministic):
        obs = np.asarray(observation)
        frame = obs[0].transpose(1, 2, 0) if obs.shape[1:] == (FRAME_SHAPE[2], *FRAME_SHAPE[:2]) else obs[0]
        self.show(frame)
        action = self.read_keys()
        if self.fps > 0:
            self._clock.tick(self.fps)
        return action[None], state
