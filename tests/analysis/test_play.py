"""experiment/play.py (src/analysis/play.py): MuJoCo's interactive viewer on Cassie under a real X server (Xvfb),
steered with real key presses (xdotool): the window shows the robot and the command label, the arrow keys change
the speed command and the gait frequency, and without a screen the tool says so and exits 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from hydrarl.analysis.play import Steering, main
from hydrarl.paths import PROJECT_ROOT

PLAY = PROJECT_ROOT / "experiment" / "play.py"


def test_without_a_screen_it_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    assert main(["--controller", "Cassie/constant"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: play.py opens a window and this machine has no screen")


def test_the_keys_step_the_commands_within_their_bounds():
    steering = Steering(0.9, 1.25, low=0.0, high=1.0)
    for code in (265, 265, 263, 263, 262):  # up, up, left, left, right
        steering.key(code)
    steering.apply()
    assert (steering.speed, steering.frequency) == (1.0, 1.15)  # the speed stops at the env's highest command
    for _ in range(15):
        steering.key(264)  # down
    steering.apply()
    assert steering.speed == 0.0


@pytest.fixture
def display():
    """A fresh Xvfb server on a free display number; its DISPLAY."""
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("Xvfb and xdotool are not installed (make test installs them)")
    number = 90 + os.getpid() % 100
    while os.path.exists(f"/tmp/.X11-unix/X{number}"):
        number += 1
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x800x24"], stderr=subprocess.DEVNULL)
    for _ in range(50):
        if os.path.exists(f"/tmp/.X11-unix/X{number}"):
            break
        time.sleep(0.1)
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def test_the_viewer_shows_cassie_and_follows_the_arrow_keys(display, tmp_path, menagerie):
    from PIL import ImageGrab

    env = {**os.environ, "DISPLAY": display}  # (with MENAGERIE_ROOT: the menagerie fixture)
    proc = subprocess.Popen([sys.executable, str(PLAY), "--controller", "Cassie/constant", "--seconds", "12"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = subprocess.run(["xdotool", "search", "--sync", "--name", "MuJoCo"], env=env, capture_output=True,
                                text=True, timeout=60).stdout.split()[0]
        time.sleep(2.0)  # the first frames drawn
        shot = np.asarray(ImageGrab.grab(xdisplay=display))[:400, :800]
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, check=True, timeout=30)
        subprocess.run(["xdotool", "key", "--delay", "100", "Up", "Up", "Left"], env=env, check=True, timeout=30)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert shot.std() > 10  # a scene drawn (floor and robot), not a blank window
    assert "last command 0.7 m/s" in out and "gait 1.15 Hz" in out  # 0.5 + 2 x 0.1 m/s; 1.25 - 0.1 Hz
    assert out.startswith("played 12.0 s (480 steps")
