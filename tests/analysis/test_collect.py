"""``experiment/collect.py`` on the real PenguinPi simulator: scripted episodes appended to a dataset (ids go on,
``one_shot`` starts afresh) that Minari reads back with observations, actions and infos aligned; Ctrl-C keeps the
finished episodes; bad settings end with exit 2 before anything is recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import minari
import numpy as np
import pytest

from hydrarl.analysis.collect import main
from hydrarl.envs.penguinpi.track import track_share
from hydrarl.paths import PROJECT_ROOT
from tests.helpers.cli import SIGINT_IGNORED

SHORT = ["env=PenguinPi", "collector=scripted", "env.max_episode_steps=15", "env.kwargs.include_encoders=true",
         "env.policy=MultiInputPolicy"]


def test_scripted_episodes_are_appended_and_read_back_aligned(tmp_path, capsys):
    dataset = tmp_path / "loop"
    assert main([*SHORT, "episodes=2", f"dataset={dataset}"]) == 0
    assert main([*SHORT, "episodes=1", f"dataset={dataset}", "seed=1"]) == 0
    assert "1 episode(s) written to" in capsys.readouterr().out.splitlines()[-1]

    data = minari.MinariDataset(dataset / "data")
    assert (data.total_episodes, data.total_steps) == (3, 45)
    for episode in data.iterate_episodes():
        images = episode.observations["image"]
        assert images.shape == (16, 80, 320, 3) and episode.actions.shape == (15, 2)
        assert episode.truncations[-1] and not episode.terminations.any()  # the time limit, not off the road
        # each stored observation is the one the env scored at that step (row 0: the reset's): its road share is the info's
        assert np.allclose([track_share(image) for image in images], episode.infos["track_share"][:, 0])
        assert np.abs(episode.actions).max() <= 1 and episode.infos["pose"].shape == (16, 3)
        pose = episode.infos["pose"]  # odometry: zero at the start, then the path driven
        assert np.allclose(pose[0], 0) and np.hypot(*pose[-1, :2]) > 0.1
    assert main([*SHORT, "episodes=1", f"dataset={dataset}", "one_shot=true"]) == 0
    assert minari.MinariDataset(dataset / "data").total_episodes == 1


def test_policy_collector_adds_seeded_action_noise_in_half_ranges(recorded_run, tmp_path):
    """collector=policy with noise=0.1 (Pendulum, torque in [-2, 2]): each recorded action is the model's own action
    at that observation plus N(0, 0.2²), clipped; without noise it is the model's action; the same seed records the
    same episode."""
    from stable_baselines3 import SAC

    model = SAC.load(recorded_run.run_dir / "checkpoints" / "best" / "model.zip", device="cpu")
    base = ["env=Pendulum", "collector=policy", f"model={recorded_run.run_dir}", "episodes=1", "seed=4"]
    residuals = {}
    for name, extra in (("clean", []), ("noisy", ["noise=0.1"]), ("again", ["noise=0.1"])):
        assert main([*base, *extra, f"dataset={tmp_path / name}"]) == 0
        episode = next(minari.MinariDataset(tmp_path / name / "data").iterate_episodes())
        assert episode.actions.shape == (200, 1) and np.abs(episode.actions).max() <= 2
        own = model.predict(episode.observations[:-1], deterministic=True)[0]
        residuals[name] = (episode.actions - own)[np.abs(episode.actions) < 2]  # clipped ones are not N(0, 0.2²)
    assert np.abs(residuals["clean"]).max() < 1e-5
    assert len(residuals["noisy"]) > 100 and 0.15 < residuals["noisy"].std() < 0.25 and abs(residuals["noisy"].mean()) < 0.05
    assert np.array_equal(residuals["noisy"], residuals["again"])


@pytest.mark.parametrize(("argv", "message"), [
    (["collector=joystick"], "collector=joystick is unknown"),
    (["collector=teleop"], "collector=teleop reads the keys of a terminal, and this command's input is not one"),
    (["episodes=0"], "episodes=0: give an integer >= 1"),
    (["colour=red"], "colour is not a setting of collect.py"),
    (["collector=policy"], "collector=policy needs model="),
    (["env=Pendulum"], "env=Pendulum has no scripted controller"),
    (["collector=scripted", "noise=2"], "noise=2: give a number in [0, 1]"),
    (["collector=teleop", "noise=0.1"], "noise applies to collector=scripted and collector=policy"),
])
def test_bad_settings_exit_2_with_one_line_and_record_nothing(tmp_path, capsys, argv, message):
    assert main([*argv, f"dataset={tmp_path / 'loop'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "loop").exists()


def test_ctrl_c_keeps_the_episodes_finished_before_it(tmp_path):
    dataset = tmp_path / "loop"
    args = [sys.executable, str(PROJECT_ROOT / "experiment" / "collect.py"), *SHORT[:2], "env.max_episode_steps=30",
            "episodes=50", f"dataset={dataset}", "env.kwargs.sim_speedup=1"]  # real time: 6 s per episode
    # started with SIGINT ignored, as a script's background job starts it: Ctrl-C still stops it
    collector = subprocess.Popen([*SIGINT_IGNORED, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (dataset / "data").exists():
        assert collector.poll() is None and time.time() < deadline
        time.sleep(0.2)
    collector.send_signal(signal.SIGINT)
    output = collector.communicate(timeout=60)[0]
    assert collector.returncode == 0, output
    assert "finished before Ctrl-C are in" in output
    kept = minari.MinariDataset(dataset / "data").total_episodes
    assert kept >= 1 and f"it holds {kept} episodes" in output


def test_teleop_drives_with_the_keys_of_a_terminal(tmp_path):
    """collect.py on a pseudo-terminal: keys typed there drive the robot (forward: wheel commands 20, 20, recorded as
    the continuous actions 20 / max_speed 40), q ends the session after its episode, and the terminal's settings come
    back."""
    import os
    import pty
    import termios

    dataset = tmp_path / "loop"
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    args = [sys.executable, str(PROJECT_ROOT / "experiment" / "collect.py"), "env=PenguinPi", "collector=teleop",
            "env.max_episode_steps=20", "episodes=5", f"dataset={dataset}", "env.kwargs.sim_speedup=0"]
    collector = subprocess.Popen(args, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and collector.poll() is None and not (dataset / "data").exists():
            os.write(master, b"w")  # forward, as a held key repeats
            time.sleep(0.05)
        os.write(master, b"q")
        output = collector.communicate(timeout=60)[0]
    finally:
        after = termios.tcgetattr(slave)
        os.close(slave)
        os.close(master)
        if collector.poll() is None:
            collector.kill()
    assert collector.returncode == 0, output
    data = minari.MinariDataset(dataset / "data")
    assert 1 <= data.total_episodes < 5  # q ended it early
    actions = np.concatenate([e.actions for e in data.iterate_episodes()])
    assert actions.shape[1] == 2 and (actions == 0.5).all(axis=1).any()  # forward
    assert {tuple(a) for a in actions} <= {(0.0, 0.0), (0.5, 0.5)}  # forward, or no key yet
    assert "drive with the arrows or w/a/s/d" in output
    assert after == before  # the terminal is as it was (cbreak mode undone)
