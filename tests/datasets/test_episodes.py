"""Offline datasets (hydrarl.datasets.episodes) on disk, read back with Minari itself: write, append (ids go on),
reopen; images stored losslessly; a process killed mid-append leaves the dataset as it was, and the next append
works; one dataset holds one kind of episode; one writer at a time."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest

from hydrarl.datasets.episodes import CACHE, CURRENT, VERSIONS, Episode, EpisodeDataset
from hydrarl.errors import UserError
from hydrarl.locks import DirLock

OBS = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 16, 3), np.uint8),
                       "encoders": gym.spaces.Box(-100, 100, (2,), np.float32)})
ACT = gym.spaces.Box(-1, 1, (2,), np.float32)


def episode(steps: int, seed: int, shape: tuple[int, ...] = (8, 16, 3)) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(observations={"image": rng.integers(0, 256, (steps + 1, *shape), dtype=np.uint8),
                                 "encoders": rng.uniform(-100, 100, (steps + 1, 2)).astype(np.float32)},
                   actions=rng.uniform(-1, 1, (steps, 2)).astype(np.float32), rewards=rng.uniform(0, 0.1, steps),
                   terminations=np.eye(1, steps, steps - 1, dtype=bool)[0], truncations=np.zeros(steps, bool),
                   infos={"pose": rng.normal(size=(steps + 1, 3))})


def test_appends_continue_the_ids_and_minari_reads_every_step_back_exactly(tmp_path):
    data = EpisodeDataset(tmp_path / "loop")
    written = [episode(5, 0), episode(3, 1)]
    assert data.append(written[:1], OBS, ACT) == [0]
    assert EpisodeDataset(tmp_path / "loop").append(written[1:], OBS, ACT) == [1]  # reopened: ids go on

    read = minari.MinariDataset(tmp_path / "loop" / CURRENT)  # Minari alone, no code of ours
    assert (read.total_episodes, read.total_steps) == (2, 8)
    for ours, theirs in zip(written, read.iterate_episodes(), strict=True):
        assert np.array_equal(theirs.observations["image"], ours.observations["image"])  # lossless
        assert np.allclose(theirs.observations["encoders"], ours.observations["encoders"])
        assert np.allclose(theirs.actions, ours.actions) and np.allclose(theirs.rewards, ours.rewards)
        assert list(theirs.terminations) == list(ours.terminations) and not theirs.truncations.any()
        assert np.allclose(theirs.infos["pose"], ours.infos["pose"])
    assert [p.name for p in (tmp_path / "loop" / VERSIONS).iterdir()] == ["1"]  # the old version is gone


def test_a_folder_given_relative_to_the_working_directory_is_written_and_appended(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # collect.py dataset=runs/datasets/x, as a bar's prepare step runs it
    assert EpisodeDataset(Path("runs") / "loop").append([episode(4, 0)], OBS, ACT, fresh=True) == [0]
    assert EpisodeDataset(Path("runs") / "loop").append([episode(2, 1)], OBS, ACT) == [1]
    assert minari.MinariDataset(tmp_path / "runs" / "loop" / CURRENT).total_steps == 6


def test_what_readers_cached_per_episode_id_goes_with_a_fresh_dataset_and_stays_on_appends(tmp_path):
    data = EpisodeDataset(tmp_path / "loop")
    data.append([episode(3, 0)], OBS, ACT)
    cached = tmp_path / "loop" / CACHE / "rewards" / "0.npy"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"episode 0 of the first dataset")
    data.append([episode(3, 1)], OBS, ACT)
    assert cached.exists()  # episode 0 is still the same episode
    assert data.append([episode(4, 2)], OBS, ACT, fresh=True) == [0]  # a new episode 0
    assert not (tmp_path / "loop" / CACHE).exists()


APPEND = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.datasets.test_episodes import ACT, OBS, episode
from hydrarl.datasets.episodes import EpisodeDataset
EpisodeDataset(Path(sys.argv[1])).append((episode(50, s, (80, 320, 3)) for s in range(40)), OBS, ACT)
"""


def test_a_process_killed_mid_append_leaves_the_dataset_as_it_was(tmp_path):
    big = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (80, 320, 3), np.uint8), "encoders": OBS["encoders"]})
    path = tmp_path / "loop"
    EpisodeDataset(path).append([episode(4, 9, (80, 320, 3))], big, ACT)
    root = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen([sys.executable, "-c", APPEND.replace("OBS, ACT)", "BIG, ACT)").replace(
        "import ACT, OBS, episode", "import ACT, episode\nimport gymnasium as gym, numpy as np\n"
        "BIG = gym.spaces.Dict({'image': gym.spaces.Box(0, 255, (80, 320, 3), np.uint8), "
        "'encoders': gym.spaces.Box(-100, 100, (2,), np.float32)})"), str(path), str(root)])
    deadline = time.time() + 60
    while not list((path / VERSIONS / "1").rglob("*.arrow"))[1:]:  # the new version has episodes being written
        assert writer.poll() is None and time.time() < deadline, "the append ended before it could be killed"
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    read = minari.MinariDataset(path / CURRENT)
    assert (read.total_episodes, read.total_steps) == (1, 4)  # as before the append
    assert EpisodeDataset(path).append([episode(2, 3, (80, 320, 3))], big, ACT) == [1]  # and the next one works
    assert minari.MinariDataset(path / CURRENT).total_episodes == 2


def test_another_kind_of_episode_or_a_second_writer_is_refused(tmp_path):
    data = EpisodeDataset(tmp_path / "loop")
    data.append([episode(2, 0)], OBS, ACT)
    with pytest.raises(UserError, match="holds episodes with observations"):
        data.append([episode(2, 0)], OBS, gym.spaces.Discrete(9))
    with DirLock(tmp_path / "loop", "dataset"), pytest.raises(UserError, match="dataset .* is in use by a live process"):
        EpisodeDataset(tmp_path / "loop").append([episode(2, 1)], OBS, ACT)
    assert data.read().total_episodes == 1


def test_reading_a_folder_without_a_dataset_says_so(tmp_path):
    with pytest.raises(UserError, match="holds no dataset"):
        EpisodeDataset(tmp_path / "none").read()
