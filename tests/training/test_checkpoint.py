"""Checkpoints: a partly filled replay buffer is stored as what it holds and comes back whole;
a write interrupted half-way, or stopped by a full disk, leaves the previous checkpoint usable; an unreadable
file is named, and a resume falls back to the newest intact checkpoint; saved normalisation statistics load
into an env with other observation bounds, not into one of another shape."""

import logging
import shutil

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import SAC

from hydrarl.agents.factory import build_agent
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import UserError
from hydrarl.training.callbacks import schedules_over_run
from hydrarl.training.checkpoint import (
    BUFFER,
    MODEL,
    NORMALIZATION,
    RNG,
    STATE,
    TrainerState,
    checkpoint_candidates,
    find_last_checkpoint,
    load_checkpoint,
    load_newest_checkpoint,
    load_normalization,
    save_checkpoint,
)
from tests.helpers.compose import compose_cfg
from tests.helpers.disks import small_disk


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
    # The next save keeps last.old until its own checkpoint is in place: no moment without one.
    (checkpoints / "last.tmp").mkdir()  # as a save killed before the rename leaves it
    assert [p.name for p in checkpoint_candidates(tmp_path)] == ["last.old"]
    save_checkpoint(checkpoints / "last", model, env, TrainerState(seed=0, epoch=2))
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last"]
    assert load_checkpoint(find_last_checkpoint(tmp_path), SAC, env, "cpu")[1].epoch == 2


def test_normalisation_statistics_load_into_other_bounds_and_refuse_another_shape(tmp_path, menagerie):
    trained = make_vec_env(compose_cfg(["env=Cassie"]).env, 0)
    trained.reset()
    for _ in range(30):
        trained.step(np.stack([trained.action_space.sample()]))
    trained.save(str(tmp_path / NORMALIZATION))
    # restore_policy into a run with other speed commands (the command is unbounded in the space, so it fits any),
    # and into an env whose observation bounds differ: the statistics load, the env keeps its own space
    other = make_vec_env(compose_cfg(["env=Cassie", "env.kwargs.speeds=[0.2,0.4]"]).env, 1)
    assert other.observation_space == trained.observation_space
    high = other.observation_space.high.copy()
    high[-1] = 0.4
    other.observation_space = spaces.Box(other.observation_space.low, high, dtype=np.float32)
    loaded = load_normalization(tmp_path, other)
    assert loaded is other and loaded.observation_space.high[-1] == np.float32(0.4)
    assert loaded.obs_rms.count == trained.obs_rms.count > 30  # the reset and 30 steps (plus an epsilon)
    assert np.array_equal(loaded.obs_rms.mean, trained.obs_rms.mean) and loaded.ret_rms.var == trained.ret_rms.var
    pendulum = make_vec_env(compose_cfg(["env=Pendulum", "env.normalize={norm_obs: true}"]).env, 0)
    with pytest.raises(UserError, match=r"shaped \(42,\) do not fit this env's \(3,\)"):
        load_normalization(tmp_path, pendulum)


def test_a_full_disk_while_writing_keeps_the_previous_checkpoint_and_gives_the_space_back(tmp_path):
    cfg, env, model = _filled_model("Pendulum", "sac", steps=50)
    save_checkpoint(tmp_path / "measure", model, env, TrainerState(seed=0))
    size_kib = sum(p.stat().st_size for p in (tmp_path / "measure").iterdir()) // 1024
    with small_disk(tmp_path / "disk", size_kib * 3 // 2) as disk:  # one checkpoint fits, not two at once
        last = disk.path / "checkpoints" / "last"
        save_checkpoint(last, model, env, TrainerState(seed=0, epoch=1, num_timesteps=50))
        before = {p.name: p.read_bytes() for p in last.iterdir()}
        model.learn(30, reset_num_timesteps=False)
        free = shutil.disk_usage(disk.path).free
        with pytest.raises(OSError, match="No space left"):
            save_checkpoint(last, model, env, TrainerState(seed=0, epoch=2, num_timesteps=80))
        assert shutil.disk_usage(disk.path).free == free  # no partial file left, none held open by the error
        assert {p.name: p.read_bytes() for p in last.iterdir()} == before  # untouched
        assert sorted(p.name for p in last.parent.iterdir()) == ["last"]  # the partial last.tmp is gone
        disk.resize(size_kib * 3)  # space back: the next save replaces it
        save_checkpoint(last, model, env, TrainerState(seed=0, epoch=2, num_timesteps=80))
        restored, state = load_checkpoint(last, SAC, env, "cpu")
        assert (state.epoch, restored.num_timesteps) == (2, 80)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A run directory with ``last`` (epoch 2, with its replay buffer) and ``epoch_0001`` (no buffer), of a
    normalising env, so that every file kind is there."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_cfg(["env=Pendulum", "algorithm=sac", "env.normalize={norm_obs: true}", "algorithm.learning_starts=10000",
                       "algorithm.policy_kwargs.net_arch=[16]"])
    env = make_vec_env(cfg.env, 0)
    model = build_agent(cfg.algorithm, env, 0, "cpu")
    model.learn(40)
    save_checkpoint(run_dir / "checkpoints" / "epoch_0001", model, env, TrainerState(seed=7, epoch=1, num_timesteps=40), full=False)
    model.learn(40, reset_num_timesteps=False)
    save_checkpoint(run_dir / "checkpoints" / "last", model, env, TrainerState(seed=7, epoch=2, num_timesteps=80))
    return cfg, run_dir


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", [MODEL, BUFFER, NORMALIZATION, RNG, STATE])
def test_an_unreadable_file_is_named_and_the_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, two_checkpoints, name, caplog):
    cfg, source = two_checkpoints
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    checkpoints = run_dir / "checkpoints"
    _truncate(checkpoints / "last" / name)
    assert [p.name for p in checkpoint_candidates(run_dir)] == ["last", "epoch_0001"]

    env = make_vec_env(cfg.env, 1)
    with caplog.at_level(logging.WARNING, logger="hydrarl"):
        model, state, used = load_newest_checkpoint(checkpoint_candidates(run_dir), SAC, env, "cpu")
    assert used == checkpoints / "epoch_0001"
    assert (state.epoch, state.num_timesteps, model.num_timesteps) == (1, 40, 40)
    warning, refill = (r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"{checkpoints / 'last' / name} is unreadable (" in warning
    assert f"resuming from the earlier checkpoint {checkpoints / 'epoch_0001'} instead (epoch 1, step 40)" in warning
    assert refill == f"{checkpoints / 'epoch_0001'} holds no replay buffer: the agent resumes with an empty one and refills it"

    shutil.rmtree(checkpoints / "epoch_0001")  # nothing intact left: a UserError naming the file and the way out
    with pytest.raises(UserError) as error:
        load_newest_checkpoint(checkpoint_candidates(run_dir), SAC, make_vec_env(cfg.env, 1), "cpu")
    message = str(error.value)
    assert message.startswith(f"{checkpoints / 'last' / name} is unreadable (")
    assert "start it over with its command without trainer.resume" in message


def test_a_missing_file_of_the_last_checkpoint_is_named(tmp_path, two_checkpoints):
    cfg, source = two_checkpoints
    shutil.copytree(source, tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "last" / RNG).unlink()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "epoch_0001")
    with pytest.raises(UserError, match=r"last/rng\.pt is unreadable \(missing\)"):
        load_newest_checkpoint(checkpoint_candidates(tmp_path / "run"), SAC, make_vec_env(cfg.env, 1), "cpu")
