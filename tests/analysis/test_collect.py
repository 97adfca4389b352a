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
        # each stored observation is the one the env scored at that step: its road share is the info's
        assert np.allclose([track_share(image) for image in images[1:]], episode.infos["track_share"][1:, 0])
        assert np.abs(episode.actions).max() <= 1 and episode.infos["pose"].shape == (16, 3)
    assert main([*SHORT, "episodes=1", f"dataset={dataset}", "one_shot=true"]) == 0
    assert minari.MinariDataset(dataset / "data").total_episodes == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["collector=teleop"], "collector=teleop is unknown"),
    (["episodes=0"], "episodes=0: give an integer >= 1"),
    (["colour=red"], "colour is not a setting of collect.py"),
    (["collector=policy"], "collector=policy needs model="),
    (["env=Pendulum"], "env=Pendulum has no scripted controller"),
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
    collector = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
