"""Checkpoints: a partly filled replay buffer is stored as what it holds and comes back whole;
a write interrupted half-way leaves the previous checkpoint usable; saved normalisation statistics load into
an env with other observation bounds, not into one of another shape."""

import numpy as np
import pytest
from stable_baselines3 import SAC

from hydrarl.agents.factory import build_agent
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import UserError
from hydrarl.training.callbacks import schedules_over_run
from hydrarl.training.checkpoint import (
    BUFFER,
    NORMALIZATION,
    TrainerState,
    find_last_checkpoint,
    load_checkpoint,
    load_normalization,
    save_checkpoint,
)
from tests.envs.test_cassie_env import MENAGERIE
from tests.helpers.compose import compose_cfg


def _filled_model(env_name, algorithm, steps=150):
    cfg = compose_cfg([f"env={env_name}", f"algorithm={algorithm}", "algorithm.learning_starts=10000", "algorithm.buffer_size=100000"])
    env = make_vec_env(cfg.env, 0)
    model = build_agent(cfg.algorithm, env, 0, "cpu")
    model.learn(steps)
    return cfg, env, model


def _arrays(buffer):
    out = {}
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == buffer.buffer_size:
            out[name] = value[: buffer.pos].copy()
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            out.update({f"{name}.{k}": v[: buffer.pos].copy() for k, v in value.items()})
    return out


@pytest.mark.parametrize("env_name, algorithm", [("Pendulum", "sac"), ("FetchReach", "sac_her")])
def test_buffer_round_trip_is_exact_and_small(tmp_path, env_name, algorithm):
    cfg, env, model = _filled_model(env_name, algorithm)
    before = _arrays(model.replay_buffer)
    schedules_over_run(model, 1000)  # as the Trainer does; the override must not drag the buffer into model.zip
    save_checkpoint(tmp_path / "last", model, env, TrainerState(seed=0, epoch=1, num_timesteps=model.num_timesteps))
    full_bytes = sum(a.nbytes * model.replay_buffer.buffer_size // max(len(a), 1) for a in before.values())
    assert (tmp_path / "last" / BUFFER).stat().st_size < full_bytes / 50
    if algorithm == "sac_her":  # [64, 64] nets: weights and optimiser states are ~100 kB
        assert (tmp_path / "last" / "model.zip").stat().st_size < 1_000_000

    env2 = make_vec_env(cfg.env, 1)
    restored, state = load_checkpoint(tmp_path / "last", type(model), env2, "cpu")
    buffer = restored.replay_buffer
    assert (buffer.pos, buffer.full, buffer.buffer_size) == (model.replay_buffer.pos, False, model.replay_buffer.buffer_size)
    after = _arrays(buffer)
    assert before.keys() == after.keys()
    for key in before:
        if key not in ("ep_length",):  # HER truncates the episode in progress on resume
            np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    assert state.num_timesteps == restored.num_timesteps == 150
    restored.learn(20, reset_num_timesteps=False)  # the restored buffer is usable (appends at pos)
    assert restored.replay_buffer.pos == 170


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path):
    cfg, env, model = _filled_model("Pendulum", "sac", steps=50)
    checkpoints = tmp_path / "checkpoints"
    save_checkpoint(checkpoints / "last", model, env, TrainerState(seed=0, epoch=1))
    # A crash between the two renames of the next save leaves last.old and no last.
    (checkpoints / "last").rename(checkpoints / "last.old")
    assert find_last_checkpoint(tmp_path).name == "last.old"
    restored, state = load_checkpoint(find_last_checkpoint(tmp_path), SAC, env, "cpu")
    assert state.epoch == 1 and restored.num_timesteps == 50


def test_normalisation_statistics_load_into_other_bounds_and_refuse_another_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("MENAGERIE_ROOT", MENAGERIE)
    trained = make_vec_env(compose_cfg(["env=Cassie"]).env, 0)
    trained.reset()
    for _ in range(30):
        trained.step(np.stack([trained.action_space.sample()]))
    trained.save(str(tmp_path / NORMALIZATION))
    # restore_policy into a run with other speed commands: the observation bounds differ, the statistics fit
    other = make_vec_env(compose_cfg(["env=Cassie", "env.kwargs.speeds=[0.2,0.4]"]).env, 1)
    assert other.observation_space != trained.observation_space
    loaded = load_normalization(tmp_path, other)
    assert loaded is other and loaded.observation_space.high[-1] == np.float32(0.4)
    assert loaded.obs_rms.count == trained.obs_rms.count > 30  # the reset and 30 steps (plus an epsilon)
    assert np.array_equal(loaded.obs_rms.mean, trained.obs_rms.mean) and loaded.ret_rms.var == trained.ret_rms.var
    pendulum = make_vec_env(compose_cfg(["env=Pendulum", "env.normalize={norm_obs: true}"]).env, 0)
    with pytest.raises(UserError, match=r"shaped \(42,\) do not fit this env's \(3,\)"):
        load_normalization(tmp_path, pendulum)
