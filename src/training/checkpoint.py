"""Checkpoints a run can be resumed from.

A checkpoint is a directory under ``<run dir>/checkpoints/``:

- ``model.zip``: the SB3 model (weights, optimiser states, step counter, hyperparameters);
- ``replay_buffer.pkl``: off-policy agents only; the filled part of the buffer (an unfilled
  1e6-transition buffer is saved as the transitions it holds, not as 1e6 rows);
- ``vecnormalize.pkl``: observation statistics, when the env normalises;
- ``rng.pt``: python/numpy/torch RNG states;
- ``trainer_state.json``: :class:`TrainerState`.

``last`` is rewritten after every epoch (and when a run is interrupted), atomically: a run killed
while writing keeps its previous ``last``. ``best`` holds the model of the best evaluation,
``epoch_<k>`` a model every ``checkpoint_every`` epochs.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from hydrarl.errors import UserError
from hydrarl.training.callbacks import RUNTIME_ATTRIBUTES
from hydrarl.training.seeding import rng_state, set_rng_state

MODEL = "model.zip"
BUFFER = "replay_buffer.pkl"
NORMALIZATION = "vecnormalize.pkl"
RNG = "rng.pt"
STATE = "trainer_state.json"


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


def _trimmed(buffer: ReplayBuffer) -> ReplayBuffer:
    """A shallow copy of ``buffer`` whose per-slot arrays hold only the filled rows."""
    clone = copy.copy(buffer)
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


def _untrim(buffer: ReplayBuffer) -> ReplayBuffer:
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
    """Write a checkpoint to ``directory`` atomically (via ``<directory>.tmp``).

    ``full=False`` writes only the model and normalisation statistics (enough to act, not to resume).
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / MODEL, exclude=RUNTIME_ATTRIBUTES)
    if isinstance(env, VecNormalize):
        env.save(str(tmp / NORMALIZATION))
    if full:
        if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
            save_to_pkl(tmp / BUFFER, _trimmed(model.replay_buffer))
        torch.save(rng_state(), tmp / RNG)
        state.save(tmp / STATE)
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def find_last_checkpoint(run_dir: Path) -> Path:
    """``<run_dir>/checkpoints/last`` (or the ``last.old`` a crash mid-write left); UserError if none."""
    base = Path(run_dir) / "checkpoints"
    for name in ("last", "last.old"):
        if (base / name / STATE).exists():
            return base / name
    raise UserError(f"trainer.resume={run_dir}: no checkpoint to resume from (expected {base / 'last' / STATE}).")


def load_normalization(directory: Path, env: VecEnv) -> VecEnv:
    """Copy the observation and return statistics saved in ``directory`` into ``env``'s fresh VecNormalize, in
    place; returns ``env`` itself.

    Only the running means and variances come from the file; spaces and settings stay those of ``env``, built
    from this run's config. So a policy restored into an env whose observation bounds differ (Cassie with
    another ``speeds`` list) keeps its input scaling; a different observation shape is a UserError."""
    path = Path(directory) / NORMALIZATION
    if isinstance(env, VecNormalize) and path.exists():
        saved = load_from_pkl(path)
        if _shapes(saved.obs_rms) != _shapes(env.obs_rms):
            raise UserError(f"{path}: normalisation statistics of observations shaped {_shapes(saved.obs_rms)} "
                            f"do not fit this env's {_shapes(env.obs_rms)}.")
        env.obs_rms, env.ret_rms = saved.obs_rms, saved.ret_rms  # a fresh unpickled object: nothing shared
    return env


def _shapes(obs_rms) -> dict | tuple:
    """The shape of a RunningMeanStd, or key -> shape for the dict of them that Dict observations have."""
    return {key: rms.mean.shape for key, rms in obs_rms.items()} if isinstance(obs_rms, dict) else obs_rms.mean.shape


def load_checkpoint(directory: Path, model_cls: type[BaseAlgorithm], env: VecEnv, device: str) -> tuple[BaseAlgorithm, TrainerState]:
    """The model (with replay buffer and RNG states restored) and trainer state saved in ``directory``."""
    directory = Path(directory)
    model = model_cls.load(directory / MODEL, env=env, device=device)
    if (directory / BUFFER).exists():
        buffer = _untrim(load_from_pkl(directory / BUFFER))
        model.replay_buffer = buffer
        if hasattr(buffer, "set_env"):  # HerReplayBuffer keeps a reference to the env
            buffer.env = None
            buffer.set_env(model.get_env())
            buffer.truncate_last_trajectory()  # the interrupted episode does not continue
        buffer.device = model.device
    set_rng_state(torch.load(directory / RNG, weights_only=False))
    return model, TrainerState.load(directory / STATE)

