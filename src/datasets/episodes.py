"""Offline datasets: whole episodes in the Minari format, appended to by collectors, read by offline training.

A dataset is a folder a user names (``dataset=runs/datasets/loop``). Inside it Minari's own layout (arrow
format, one folder per episode, ``metadata.json`` with the spaces and totals) lives in a version folder, and
``<dataset>/data`` is a symbolic link to the current one, so any Minari reader opens it without our code::

    import minari
    data = minari.MinariDataset("runs/datasets/loop/data")

Appending never touches the current version: a new version is made from hard links of the current one's
episode files (no copy: Minari writes an episode's files once and never rewrites them) and a copy of its
metadata, the new episodes are written into it, and the link is switched to it in one rename. A process killed
mid-append leaves the link on the old version: the dataset reads as it was, and the next append removes the
half-made version. Episode ids go on from the dataset's count. Images are stored losslessly (no JPEG), so a
reward computed again from a stored observation equals the one computed when it was recorded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from hydrarl.errors import UserError
from hydrarl.locks import DirLock

CURRENT = "data"          # the link readers open
VERSIONS = ".versions"    # <dataset>/.versions/<n>/: one complete Minari layout each
CACHE = ".cache"          # what readers derive per episode id (offline training's recomputed rewards); dropped when
                          # the dataset is replaced, whose new episodes reuse the ids
DATASET_NAMESPACE = "hydrarl"  # Minari's dataset_id: hydrarl/<folder name>-v0


@dataclass
class Episode:
    """One recorded episode. ``observations`` has one more entry than ``actions`` (the last observation);
    for a Dict space it is a dict of arrays. ``infos``: per-step lists (e.g. ``pose``: one (x, y, θ) per
    observation)."""

    observations: Any
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: dict[str, np.ndarray] = field(default_factory=dict)


class EpisodeDataset:
    """The dataset in folder ``path`` (made on the first append)."""

    def __init__(self, path: Path):
        self.path = Path(path).absolute()  # Minari sizes a relative storage folder at <folder>/<folder>/...: not found

    @property
    def exists(self) -> bool:
        return (self.path / CURRENT / "metadata.json").exists()

    def read(self):
        """The current version as a ``minari.MinariDataset``; a UserError when there is none."""
        import minari

        if not self.exists:
            raise UserError(f"dataset={self.path} holds no dataset (no {self.path / CURRENT}/metadata.json); "
                            "record one with experiment/collect.py first.")
        return minari.MinariDataset(self.path / CURRENT)

    @property
    def total_episodes(self) -> int:
        return self.read().total_episodes if self.exists else 0

    def append(self, episodes: Iterable[Episode], observation_space: gym.Space, action_space: gym.Space,
               metadata: dict[str, Any] | None = None, fresh: bool = False) -> list[int]:
        """Write ``episodes`` after the ones there (ids go on), as one atomic step; their ids. The spaces must
        be the dataset's (a UserError otherwise: one dataset holds one kind of episode). ``fresh``: replace what
        is there instead (ids from 0), as atomically."""
        episodes = list(episodes)
        with DirLock(self.path, "dataset"):  # one writer at a time (a second one: a UserError naming the first)
            return self._append(episodes, observation_space, action_space, metadata or {}, fresh)

    def _append(self, episodes: list[Episode], observation_space: gym.Space, action_space: gym.Space,
                metadata: dict[str, Any], fresh: bool) -> list[int]:
        from minari.data_collector.episode_buffer import EpisodeBuffer
        from minari.dataset.minari_storage import MinariStorage

        versions = self.path / VERSIONS
        versions.mkdir(parents=True, exist_ok=True)
        current = self._current()
        new = versions / str(int(current.name) + 1 if current is not None else 0)
        shutil.rmtree(new, ignore_errors=True)  # a half-made version an earlier append left
        if current is None or fresh:
            import minari

            shutil.rmtree(self.path / CACHE, ignore_errors=True)  # before the switch: never kept for other episodes

            storage = MinariStorage.new(new, observation_space, action_space, data_format="arrow", jpeg_encoding=False)
            storage.update_metadata({"dataset_id": f"{DATASET_NAMESPACE}/{self.path.name}-v0",
                                     "minari_version": minari.__version__})  # what Minari's reader asks for
        else:
            _link_tree(current, new)
            storage = MinariStorage.read(new)
            if (storage.observation_space, storage.action_space) != (observation_space, action_space):
                shutil.rmtree(new)
                raise UserError(f"dataset={self.path} holds episodes with observations {storage.observation_space} and "
                                f"actions {storage.action_space}; these have {observation_space} and {action_space}: "
                                "give another dataset folder.")
        first = storage.total_episodes
        storage.update_episodes(EpisodeBuffer(id=first + i, observations=e.observations, actions=e.actions,
                                              rewards=list(e.rewards), terminations=list(e.terminations),
                                              truncations=list(e.truncations), infos=e.infos or None)
                                for i, e in enumerate(episodes))
        if metadata:
            storage.update_metadata(metadata)
        self._switch(new)
        if current is not None:
            shutil.rmtree(current, ignore_errors=True)  # its files live on as hard links in the new version
        return list(range(first, first + len(episodes)))

    def _current(self) -> Path | None:
        link = self.path / CURRENT
        return (self.path / os.readlink(link)).resolve() if link.is_symlink() else None

    def _switch(self, version: Path) -> None:
        """Point ``<dataset>/data`` at ``version`` in one rename (a reader sees the old or the new, never none)."""
        tmp = self.path / f".{CURRENT}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(version.relative_to(self.path))
        os.replace(tmp, self.path / CURRENT)


def _link_tree(source: Path, target: Path) -> None:
    """``target`` as a copy of ``source`` whose files are hard links, but for the metadata files Minari rewrites
    (``metadata.json``), which are copied."""
    for root, _dirs, files in os.walk(source):
        out = target / Path(root).relative_to(source)
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            if name == "metadata.json":
                shutil.copy2(Path(root) / name, out / name)
            else:
                os.link(Path(root) / name, out / name)
