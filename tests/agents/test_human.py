"""The human controller: refused without a screen (constructor and train.py); with a stand-in screen
(pygame's dummy driver) it shows the frames scaled up and maps the arrow keys."""

import signal
import sys

import numpy as np
import pytest

from hydrarl.agents import human as human_module
from hydrarl.agents.human import HumanController
from hydrarl.errors import UserError
from tests.helpers.carracing_frames import carracing_venv, frame
from tests.helpers.cli import run_cli


def test_train_py_refuses_human_without_a_screen(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(["env=CarRacingContinuous", "algorithm=human", "logger=[]", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                   env={"SDL_VIDEODRIVER": "dummy"})
    assert proc.returncode == 2, proc.stderr
    assert "algorithm=human (HumanController) cannot act in env=CarRacingContinuous" in proc.stderr
    assert "algorithm=human needs a screen and a keyboard: " in proc.stderr
    assert "Traceback" not in proc.stderr and not run_dir.exists()




@pytest.mark.parametrize("environ, reason", [
    ({"SDL_VIDEODRIVER": "dummy"}, "no DISPLAY"),
    ({"SDL_VIDEODRIVER": ""}, "no DISPLAY"),
    ({"SDL_VIDEODRIVER": "dummy", "DISPLAY": ":0"}, r"SDL_VIDEODRIVER=dummy turns the screen off \(unset it"),
    ({"SDL_VIDEODRIVER": "offscreen", "WAYLAND_DISPLAY": "wayland-0"}, "SDL_VIDEODRIVER=offscreen turns the screen off"),
])
def test_human_needs_a_screen(venv, monkeypatch, environ, reason):
    for key in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(UserError, match=r"^algorithm=human needs a screen and a keyboard: " + reason):
        HumanController("CnnPolicy", venv)


class Keys:
    """Stand-in for pygame.key.get_pressed(): the keys named are held."""

    def __init__(self, *held):
        self.held = set(held)

    def __getitem__(self, key):
        return key in self.held


def test_human_shows_the_frame_and_maps_the_arrows(venv, monkeypatch):
    """With a stand-in screen (pygame's dummy driver, the display check passed), the controller draws
    the frame it gets scaled up and turns the held arrows into the action."""
    import pygame

    monkeypatch.setattr(human_module, "display_problem", lambda: None)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    model = HumanController("CnnPolicy", venv, scale=3, fps=0)
    f = frame((50, 71))
    held = {
        (): [0, 0, 0],
        (pygame.K_LEFT,): [-1, 0, 0],
        (pygame.K_RIGHT, pygame.K_UP): [1, 1, 0],
        (pygame.K_LEFT, pygame.K_RIGHT, pygame.K_DOWN): [0, 0, 0.8],
    }
    try:
        for keys, expected in held.items():
            monkeypatch.setattr(pygame.key, "get_pressed", lambda keys=keys: Keys(*keys))
            action, _ = model.predict(f[None])
            np.testing.assert_allclose(action, [expected])
        window = pygame.display.get_surface()
        assert window.get_size() == (288, 288)
        for row, col in [(10, 10), (30, 60), (70, 47)]:  # grass, road, car: pixel (row, col) drawn 3x3
            assert tuple(window.get_at((col * 3 + 1, row * 3 + 1)))[:3] == tuple(f[row, col])
        # Escape is Ctrl-C
        caught = []
        previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
        try:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE))
            model.predict(f[None])
        finally:
            signal.signal(signal.SIGINT, previous)
        assert caught == [True]
    finally:
        model.close()
        pygame.quit()


def test_human_drives_one_car(monkeypatch):
    monkeypatch.setattr(human_module, "display_problem", lambda: None)
    env = carracing_venv(2)
    with pytest.raises(UserError, match=r"drives one car.*env.n_envs=1"):
        HumanController("CnnPolicy", env)
    env.close()


def test_display_check_sees_a_screen(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    assert human_module.display_problem() is None
    monkeypatch.setenv("SDL_VIDEODRIVER", "kmsdrm")   # a real driver without X
    monkeypatch.delenv("DISPLAY")
    assert human_module.display_problem() is None
