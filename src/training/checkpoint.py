"""Checkpoints a run can be resumed from.

A checkpoint is a directory under ``<run dir>/checkpoints/``:

- ``model.zip``: the SB3 model (weights, optimiser states, step counter, hyperparameters);
- ``replay_buffer.pkl``: off-policy agents only, and only in ``last``; the filled part of the buffer (an
  unfilled 1e6-transition buffer is saved as the transitions it holds, not as 1e6 rows);
- ``vecnormalize.pkl``: observation statistics, when the env normalises;
- ``rng.pt``: python/numpy/torch RNG states (and a JAX agent's key);
- ``trainer_state.json``: :class:`TrainerState`.

Every checkpoint is written whole into ``<name>.tmp`` beside it, flushed to disk and only then renamed
into place: a run killed, or a disk filled, while writing keeps its previous checkpoint (a failed write
removes its partial copy, giving the space back). ``last`` is rewritten after every epoch (and when a run
is interrupted); ``best`` holds the model of the best evaluation, ``epoch_<k>`` the checkpoint of every
``checkpoint_every``-th epoch without the replay buffer.

Resuming (:func:`load_newest_checkpoint`) takes the newest checkpoint whose files all read back: ``last``,
else the newest ``epoch_<k>``, with a warning naming the unreadable file and the checkpoint used instead.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from hydrarl.config.runs import MODEL, NORMALIZATION, read_normalization
from hydrarl.errors import UserError
from hydrarl.training.callbacks import RUNTIME_ATTRIBUTES
from hydrarl.training.seeding import rng_state, set_rng_state

BUFFER = "replay_buffer.pkl"
RNG = "rng.pt"
AGENT_KEY = "agent_key"  # in rng.pt: a JAX agent's random key
STATE = "trainer_state.json"
LAST = "last"  # the checkpoint rewritten every epoch
BEST = "best"  # the model of the best evaluation (by trainer.metric)
EPOCH = re.compile(r"epoch_(\d+)")  # epoch_<k>: kept every trainer.checkpoint_every epochs

log = logging.getLogger("hydrarl")


class UnreadableCheckpoint(UserError):
    """A checkpoint file that is missing or cannot be read back (truncated, corrupt); names the file."""

    def __init__(self, path: Path, cause: BaseException | str):
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0][:200]}"
        super().__init__(f"{path} is unreadable ({reason})")
        self.path = Path(path)


@dataclass
class TrainerState:
    """The Trainer's counters and history; everything besides the agent that a resume needs."""

    seed: int
    epoch: int = 0                          # epochs completed
    num_timesteps: int = 0                  # env steps trained
    epoch_end_step: int | None = None       # where the epoch in progress ends (set while learning)
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics
    best_score: float | None = None
    best_epoch: int | None = None
    early_stopped: bool = False
    pruned: bool = False                    # stopped by the sweep's pruner
    tracker_ids: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> TrainerState:
        return cls(**json.loads(path.read_text()))


def _trimmed(buffer: BaseBuffer) -> BaseBuffer:
    """A shallow copy of ``buffer`` whose per-slot arrays hold only the filled rows (of each of its
    ``buffers`` for an agent with several, HAC's layers)."""
    clone = copy.copy(buffer)
    if hasattr(buffer, "buffers"):
        clone.buffers = [_trimmed(b) for b in buffer.buffers]
        return clone
    if buffer.full:
        return clone
    size, pos = buffer.buffer_size, buffer.pos
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == size:
            setattr(clone, name, value[:pos])
        elif isinstance(value, dict) and all(isinstance(v, np.ndarray) and v.shape[0] == size for v in value.values()):
            setattr(clone, name, {k: v[:pos] for k, v in value.items()})
    clone._trimmed = True
    return clone


def _padded(array: np.ndarray, size: int) -> np.ndarray:
    full = np.zeros((size, *array.shape[1:]), dtype=array.dtype)  # untouched pages stay unallocated
    full[: len(array)] = array
    return full


def _untrim(buffer: BaseBuffer) -> BaseBuffer:
    if hasattr(buffer, "buffers"):
        buffer.buffers = [_untrim(b) for b in buffer.buffers]
        return buffer
    if not getattr(buffer, "_trimmed", False):
        return buffer
    size, pos = buffer.buffer_size, buffer.pos
    for name, value in list(vars(buffer).items()):
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == pos:
            setattr(buffer, name, _padded(value, size))
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) and v.shape[0] == pos for v in value.values()):
            setattr(buffer, name, {k: _padded(v, size) for k, v in value.items()})
    del buffer._trimmed
    return buffer


def save_checkpoint(directory: Path, model: BaseAlgorithm, env: VecEnv, state: TrainerState, full: bool = True) -> None:
    """Write a checkpoint to ``directory`` atomically: whole into ``<directory>.tmp``, flushed, then renamed
    over the old one. A failure while writing (a full disk) removes the partial copy and keeps the old one.

    ``full=False`` leaves out the replay buffer, the one large part (a resume from it refills the buffer).
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        model.save(tmp / MODEL, exclude=RUNTIME_ATTRIBUTES)
        if isinstance(env, VecNormalize):
            env.save(str(tmp / NORMALIZATION))
        if full and _replay_buffer(model) is not None:
            save_to_pkl(tmp / BUFFER, _trimmed(model.replay_buffer))
        torch.save({**rng_state(), **_agent_key(model)}, tmp / RNG)
        state.save(tmp / STATE)
        _flush(tmp)
    except BaseException as exc:
        # The failed writer's frames, kept alive by the traceback, may hold its file open (SB3's zip writer
        # does), and an open file keeps its disk space after removal: drop their locals, then remove.
        traceback.clear_frames(exc.__traceback__)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = directory.with_name(directory.name + ".old")
    if directory.exists():  # else an ``.old`` is what a kill between the two renames left: kept until replaced
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    tmp.rename(directory)
    _fsync(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def _agent_key(model: BaseAlgorithm) -> dict[str, np.ndarray]:
    """A JAX agent's own random key (sbx's ``model.key``, split at every sample it draws), which its ``load`` resets
    to the seed's: kept with the global RNG states so that a resume continues the stream."""
    key = getattr(model, "key", None)
    return {} if key is None else {AGENT_KEY: np.asarray(key)}


def _replay_buffer(model: BaseAlgorithm):
    """The model's replay buffer: an off-policy agent's, or the object holding the ``buffers`` of an agent made of
    several (HAC); None for an agent without one."""
    if isinstance(model, OffPolicyAlgorithm) or hasattr(type(model), "replay_buffer"):
        return getattr(model, "replay_buffer", None)
    return None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush(directory: Path) -> None:
    """Put the files of ``directory`` (and its entries) on disk, so that a rename never publishes a
    checkpoint whose data a power loss could still take back."""
    for path in directory.iterdir():
        _fsync(path)
    _fsync(directory)


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    """The checkpoints of ``run_dir`` a resume may use, newest first: ``last`` (or the ``last.old`` a crash
    between two renames left), then each ``epoch_<k>`` holding a trainer state, highest ``k`` first.
    UserError if there is none."""
    base = Path(run_dir) / "checkpoints"
    found = [base / name for name in (LAST, LAST + ".old") if (base / name).is_dir()]
    epochs = [p for p in base.glob("epoch_*") if EPOCH.fullmatch(p.name) and (p / STATE).exists()] if base.is_dir() else []
    found += sorted(epochs, key=lambda p: int(EPOCH.fullmatch(p.name)[1]), reverse=True)
    if not found:
        raise UserError(f"trainer.resume={run_dir}: no checkpoint to resume from (expected {base / LAST / STATE}).")
    return found


def find_last_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint of ``run_dir`` (see :func:`checkpoint_candidates`); UserError if none."""
    return checkpoint_candidates(run_dir)[0]


def load_normalization(directory: Path, env: VecEnv) -> VecEnv:
    """Copy the observation and return statistics saved in ``directory`` into ``env``'s fresh VecNormalize, in
    place; returns ``env`` itself.

    Only the running means and variances come from the file; spaces and settings stay those of ``env``, built
    from this run's config. So a policy restored into an env whose observation bounds differ keeps its input
    scaling; a different observation shape is a UserError, an
    unreadable file an :class:`UnreadableCheckpoint`."""
    saved = _read_normalization(Path(directory), env)
    if saved is not None:
        env.obs_rms, env.ret_rms = saved.obs_rms, saved.ret_rms  # a fresh unpickled object: nothing shared
    return env


def _read_normalization(directory: Path, env: VecEnv) -> VecNormalize | None:
    """The statistics saved in ``directory`` for ``env`` (None when it does not normalise or none are saved)."""
    path = directory / NORMALIZATION
    if not isinstance(env, VecNormalize) or not path.exists():
        return None
    saved = _read(path, read_normalization)
    if _shapes(saved.obs_rms) != _shapes(env.obs_rms):
        raise UserError(f"{path}: normalisation statistics of observations shaped {_shapes(saved.obs_rms)} "
                        f"do not fit this env's {_shapes(env.obs_rms)}.")
    return saved


def _read(path: Path, reader: Callable[[Path], object]) -> object:
    """``reader(path)``; an :class:`UnreadableCheckpoint` naming ``path`` if it is missing or fails to read."""
    if not path.exists():
        raise UnreadableCheckpoint(path, "missing")
    try:
        return reader(path)
    except Exception as exc:  # noqa: BLE001 - whatever a truncated file makes its reader raise
        raise UnreadableCheckpoint(path, exc) from exc


def _shapes(obs_rms) -> dict | tuple:
    """The shape of a RunningMeanStd, or key -> shape for the dict of them that Dict observations have."""
    return {key: rms.mean.shape for key, rms in obs_rms.items()} if isinstance(obs_rms, dict) else obs_rms.mean.shape


def read_state(directory: Path) -> TrainerState:
    """The :class:`TrainerState` saved in ``directory``; :class:`UnreadableCheckpoint` if it cannot be read."""
    return _read(Path(directory) / STATE, TrainerState.load)


def load_checkpoint(directory: Path, model_cls: type[BaseAlgorithm], env: VecEnv, device: str) -> tuple[BaseAlgorithm, TrainerState]:
    """The model (with replay buffer, normalisation statistics of ``env`` and RNG states restored) and trainer
    state saved in ``directory``. Every file is read before anything is applied: an unreadable one raises
    :class:`UnreadableCheckpoint` naming it, leaving ``env`` and the RNGs as they were."""
    directory = Path(directory)
    state = read_state(directory)
    normalization = _read_normalization(directory, env)
    rng = _read(directory / RNG, lambda p: torch.load(p, weights_only=False))
    model = _read(directory / MODEL, lambda p: model_cls.load(p, env=env, device=device))
    buffer = _read(directory / BUFFER, load_from_pkl) if (directory / BUFFER).exists() else None
    if buffer is not None and not all(isinstance(b, BaseBuffer) for b in getattr(buffer, "buffers", [buffer])):
        raise UnreadableCheckpoint(directory / BUFFER, f"holds a {type(buffer).__name__}, not a replay buffer")
    if normalization is not None:
        env.obs_rms, env.ret_rms = normalization.obs_rms, normalization.ret_rms
    if buffer is not None:
        buffer = _untrim(buffer)
        if hasattr(buffer, "set_env"):  # HerReplayBuffer keeps a reference to the env
            buffer.env = None
            buffer.set_env(model.get_env())
            buffer.truncate_last_trajectory()  # the interrupted episode does not continue
        # the device of the buffer the model made for itself (a JAX agent's stays on the CPU)
        buffer.device = getattr(model.replay_buffer, "device", model.device)
        model.replay_buffer = buffer
    if AGENT_KEY in rng:
        import jax.numpy as jnp  # imported already: the model is a JAX agent

        model.key = jnp.asarray(rng.pop(AGENT_KEY))
    set_rng_state(rng)
    return model, state


def resume_seed(candidates: list[Path]) -> int:
    """The seed of the run the checkpoints ``candidates`` belong to (the same in each): from the newest
    readable trainer state; the UserError of :func:`load_newest_checkpoint` if none can be read."""
    unreadable = []
    for directory in candidates:
        try:
            return read_state(directory).seed
        except UnreadableCheckpoint as exc:
            unreadable.append(exc)
    raise _nothing_intact(candidates, unreadable)


def load_newest_checkpoint(candidates: list[Path], model_cls: type[BaseAlgorithm], env: VecEnv,
                           device: str) -> tuple[BaseAlgorithm, TrainerState, Path]:
    """:func:`load_checkpoint` of the first of ``candidates`` (newest first, :func:`checkpoint_candidates`)
    whose files all read back; returns the model, the state and the checkpoint used. Passing over an
    unreadable one logs a warning naming its file and the checkpoint used instead; when none is intact,
    a UserError names the unreadable files and how to start over."""
    unreadable: list[UnreadableCheckpoint] = []
    for directory in candidates:
        try:
            model, state = load_checkpoint(directory, model_cls, env, device)
        except UnreadableCheckpoint as exc:
            unreadable.append(exc)
            continue
        for exc in unreadable:
            log.warning("%s; resuming from the earlier checkpoint %s instead (epoch %d, step %d)",
                        exc, directory, state.epoch, state.num_timesteps)
        if _replay_buffer(model) is not None and not (directory / BUFFER).exists():
            log.warning("%s holds no replay buffer: the agent resumes with an empty one and refills it", directory)
        return model, state, directory
    raise _nothing_intact(candidates, unreadable)


def _nothing_intact(candidates: list[Path], unreadable: list[UnreadableCheckpoint]) -> UserError:
    run_dir = candidates[0].parent.parent
    return UserError("; ".join(map(str, unreadable)) + f". No intact checkpoint is left in {run_dir / 'checkpoints'}, "
                     f"so the run cannot be resumed: start it over with its command without trainer.resume "
                     f"(a new run directory; its overrides are in {run_dir / '.hydra' / 'overrides.yaml'}).")
