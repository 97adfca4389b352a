"""PER-DDQN the agent: the double-DQN update by hand, learning CartPole through ``run()``, checkpoint ->
resume with priorities, CarRacing with the users' network. The buffer and sum-tree: test_per_buffer.py."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv

from hydrarl.agents.factory import build_agent
from hydrarl.agents.networks import CarRacingCNN
from hydrarl.agents.per_ddqn import PERDoubleDQN
from hydrarl.envs.factory import make_vec_env
from hydrarl.training.callbacks import schedules_over_run
from hydrarl.training.checkpoint import BUFFER, TrainerState, load_checkpoint, save_checkpoint
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg

# -- the agent: double-DQN update by hand ---------------------------------------------------------


def cartpole_vec():
    return DummyVecEnv([lambda: gym.make("CartPole-v1")])


@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_double_dqn_update_matches_a_hand_computation(loss):
    gamma, alpha, beta0, eps = 0.9, 0.6, 0.4, 1e-6
    model = PERDoubleDQN("MlpPolicy", cartpole_vec(), learning_rate=0.0, gamma=gamma, alpha=alpha, beta0=beta0,
                         priority_eps=eps, loss=loss, policy_kwargs={"net_arch": []}, seed=0, device="cpu")
    model.set_logger(Logger(folder=None, output_formats=[]))
    # linear Q-functions Q(s) = W s + b with known weights; online and target differ
    w_online, b_online = np.array([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, -1.0]]), np.array([0.1, -0.2])
    w_target, b_target = np.array([[0.5, 1.0, 0.0, 2.0], [2.0, 0.0, -1.0, 0.5]]), np.array([0.0, 0.3])
    with th.no_grad():
        for net, (w, b) in ((model.q_net, (w_online, b_online)), (model.q_net_target, (w_target, b_target))):
            layer = net.q_net[0]
            layer.weight.copy_(th.tensor(w))
            layer.bias.copy_(th.tensor(b))
    rng = np.random.RandomState(0)
    k = 7
    s, s2 = rng.uniform(-2, 2, size=(k, 4)), rng.uniform(-2, 2, size=(k, 4))
    a, r, d = rng.randint(0, 2, size=k), rng.uniform(-3, 3, size=k), np.array([0, 0, 1, 0, 0, 1, 0])
    buffer = model.replay_buffer
    for i in range(k):
        buffer.add(s[i : i + 1], s2[i : i + 1], a[i : i + 1], r[i : i + 1], d[i : i + 1], [{}])
    buffer.update_priorities(np.arange(k), rng.uniform(0, 3, size=k))  # unequal priorities -> unequal weights
    before = buffer.tree.leaves.copy()

    np.random.seed(11)
    indices, _ = buffer.sample_indices(16)
    np.random.seed(11)  # train() draws the same batch
    model.train(gradient_steps=1, batch_size=16)

    s32, s2_32 = s.astype(np.float32).astype(float), s2.astype(np.float32).astype(float)
    q_online, q_online_next = s32 @ w_online.T + b_online, s2_32 @ w_online.T + b_online
    q_target_next = s2_32 @ w_target.T + b_target
    chosen = q_online_next.argmax(axis=1)
    assert np.any(chosen != q_target_next.argmax(axis=1)), "the batch must tell double DQN from DQN"
    y = r + gamma * (1 - d) * q_target_next[np.arange(k), chosen]
    y_dqn = r + gamma * (1 - d) * q_target_next.max(axis=1)
    delta = q_online[np.arange(k), a] - y
    if loss == "huber":
        ell = np.where(np.abs(delta) < 1, 0.5 * delta**2, np.abs(delta) - 0.5)
    else:
        ell = delta**2
    p = before / before.sum()
    w = (k * p[indices]) ** -beta0
    w /= w.max()
    expected_loss = np.mean(w * ell[indices])
    assert model.logger.name_to_value["train/loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert model.logger.name_to_value["train/mean_is_weight"] == pytest.approx(w.mean(), rel=1e-5)
    assert model.logger.name_to_value["train/beta"] == pytest.approx(beta0)
    delta_dqn = q_online[np.arange(k), a] - y_dqn
    assert not np.allclose(delta[indices], delta_dqn[indices])
    # targets from the method itself, and priorities from |delta|
    data = buffer.sample(16)
    np.testing.assert_allclose(model.double_q_targets(data).numpy().reshape(-1), y[data.indices], rtol=1e-5, atol=1e-5)
    sampled = np.unique(indices)
    np.testing.assert_allclose(buffer.tree.leaves[sampled], (np.abs(delta[sampled]) + eps) ** alpha, rtol=1e-5)
    untouched = np.setdiff1d(np.arange(k), sampled)
    np.testing.assert_array_equal(buffer.tree.leaves[untouched], before[untouched])


def test_agent_refuses_what_it_does_not_support():
    with pytest.raises(ValueError, match="handle_timeout_termination=false"):
        PERDoubleDQN("MlpPolicy", cartpole_vec(), optimize_memory_usage=True)
    model = PERDoubleDQN("MlpPolicy", cartpole_vec(), optimize_memory_usage=True, buffer_size=100,
                         replay_buffer_kwargs={"handle_timeout_termination": False}, learning_starts=20)
    model.learn(150)  # wraps the buffer: the memory-saving layout trains
    assert model.replay_buffer.full and model.replay_buffer.tree.leaves[model.replay_buffer.pos] == 0
    with pytest.raises(ValueError, match="n_steps"):
        PERDoubleDQN("MlpPolicy", cartpole_vec(), n_steps=3)
    with pytest.raises(ValueError, match="loss"):
        PERDoubleDQN("MlpPolicy", cartpole_vec(), loss="l1")


# -- the agent through run() ------------------------------------------------------------------------

CARTPOLE = ["env=CartPole", "algorithm=per_ddqn", "logger=[]", "trainer.progress_bar=false", "trainer.checkpoint_every=0"]
# Settings that learn CartPole in a few thousand steps (measured: see the module's report).
LEARN = ["algorithm.learning_rate=0.001", "algorithm.target_update_interval=500", "algorithm.exploration_fraction=0.2",
         "trainer.n_epochs=8", "trainer.eval_after_n_steps=2500", "trainer.n_test_rollouts=10",
         "trainer.early_stop.threshold=150", "trainer.early_stop.last_n=1"]


def history(run_dir):
    return json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())["history"]


@pytest.mark.parametrize("prioritization", ["proportional", "recency"])
def test_per_ddqn_learns_cartpole(tmp_path, prioritization):
    cfg = compose_cfg([*CARTPOLE, *LEARN, "seed=0", f"algorithm.prioritization={prioritization}"])
    result = run(cfg, tmp_path / "r")
    rewards = [h["eval/mean_reward"] for h in history(tmp_path / "r")]
    assert result.early_stopped and rewards[-1] >= 150, rewards  # a random policy scores ~22
    assert result.num_timesteps <= 20_000
    last = history(tmp_path / "r")[-1]
    if prioritization == "proportional":
        assert 0 < last["train/mean_is_weight"] <= 1
    else:
        assert last["train/mean_is_weight"] == 1


@pytest.mark.parametrize("prioritization", ["proportional", "recency"])
def test_both_modes_train_with_several_envs(tmp_path, prioritization):
    cfg = compose_cfg([*CARTPOLE, "seed=1", "env.n_envs=3", "trainer.n_epochs=2", "trainer.eval_after_n_steps=300",
                       "trainer.n_test_rollouts=1", "algorithm.learning_starts=60", "algorithm.batch_size=16",
                       "algorithm.buffer_size=300", f"algorithm.prioritization={prioritization}"])
    result = run(cfg, tmp_path / "r")
    assert result.status == "completed" and result.num_timesteps == 600
    last = history(tmp_path / "r")[-1]
    assert last["train/n_updates"] > 0 and np.isfinite(last["train/loss"])
    assert last["train/beta"] == pytest.approx(0.4 + 0.6 * (1 - 3 / 600), abs=0.01)  # annealed over the run


# -- checkpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize("buffer_size, prioritization", [(2000, "proportional"), (200, "proportional"), (2000, "recency")])
def test_checkpoint_round_trip_keeps_priorities(tmp_path, buffer_size, prioritization):
    cfg = compose_cfg(["env=CartPole", "algorithm=per_ddqn", "algorithm.learning_starts=50", "algorithm.train_freq=1",
                       f"algorithm.buffer_size={buffer_size}", f"algorithm.prioritization={prioritization}"])
    env = make_vec_env(cfg.env, 0)
    model = build_agent(cfg.algorithm, env, 0, "cpu")
    schedules_over_run(model, 1000)
    model.learn(300)
    buffer = model.replay_buffer
    assert buffer.full == (buffer_size < 300)
    save_checkpoint(tmp_path / "last", model, env, TrainerState(seed=0, epoch=1, num_timesteps=300))
    if buffer_size > 300:  # only the filled rows are stored
        assert (tmp_path / "last" / BUFFER).stat().st_size < 300 * 200
    restored, _ = load_checkpoint(tmp_path / "last", PERDoubleDQN, make_vec_env(cfg.env, 1), "cpu")
    again = restored.replay_buffer
    assert type(again) is type(buffer) and (again.pos, again.full) == (buffer.pos, buffer.full)
    assert (again.prioritization, again.alpha, again.beta0) == (prioritization, 0.6, 0.4)
    if prioritization == "proportional":
        assert len(np.unique(buffer.tree.leaves[: buffer.n_transitions()])) > 10  # priorities were learnt
        np.testing.assert_array_equal(again.tree._sum, buffer.tree._sum)  # the whole tree, bit for bit
        np.testing.assert_array_equal(again.tree._max, buffer.tree._max)
    for seed in range(3):  # the same draws from the same RNG state
        np.random.seed(seed)
        first = buffer.sample_indices(32)
        np.random.seed(seed)
        np.testing.assert_array_equal(again.sample_indices(32)[0], first[0])
    schedules_over_run(restored, 1000)
    restored.learn(100, reset_num_timesteps=False)  # continues: appends and updates priorities
    assert restored.num_timesteps == 400 and restored._n_updates > model._n_updates
    if prioritization == "proportional":
        assert again.tree.total == pytest.approx(again.tree.leaves.sum())
        assert not np.array_equal(again.tree.leaves, buffer.tree.leaves)


def test_resume_through_run_continues_with_the_buffer(tmp_path):
    base = [*CARTPOLE, "seed=2", "trainer.eval_after_n_steps=300", "trainer.n_test_rollouts=1",
            "algorithm.learning_starts=50", "algorithm.buffer_size=5000"]
    first = run(compose_cfg([*base, "trainer.n_epochs=1"]), tmp_path / "r")
    assert first.epochs_run == 1
    resumed = run(compose_cfg([*base, "trainer.n_epochs=2", f"trainer.resume={tmp_path / 'r'}"]), tmp_path / "r")
    assert (resumed.status, resumed.epochs_run, resumed.num_timesteps) == ("completed", 2, 600)
    restored, _ = load_checkpoint(tmp_path / "r" / "checkpoints" / "last", PERDoubleDQN, make_vec_env(compose_cfg(base).env, 0), "cpu")
    assert restored.replay_buffer.pos == 600 and restored.replay_buffer.tree.total > 0


# -- CarRacing: the users' network -----------------------------------------------------------------


def test_carracing_cnn_shapes():
    space = spaces.Box(0, 255, shape=(1, 96, 96), dtype=np.uint8)
    net = CarRacingCNN(space)
    assert net.features_dim == 216
    assert net.linear[0].in_features == 12 * 6 * 6
    assert net(th.zeros(5, 1, 96, 96)).shape == (5, 216)
    convs = [m for m in net.cnn if isinstance(m, th.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(6, (7, 7), (3, 3)), (12, (4, 4), (1, 1))]


def test_per_ddqn_runs_an_epoch_on_carracing_with_the_users_network(tmp_path):
    cfg = compose_cfg(["+search=CarRacing/per_ddqn", "logger=[]", "seed=0", "trainer.n_epochs=1",
                       "trainer.eval_after_n_steps=100", "trainer.n_test_rollouts=1", "trainer.progress_bar=false",
                       "algorithm.learning_starts=40", "algorithm.buffer_size=1000", "env.max_episode_steps=100"])
    assert cfg.algorithm.policy_kwargs.net_arch == [64]
    result = run(cfg, tmp_path / "r")
    assert result.status == "completed" and result.num_timesteps == 100
    model = PERDoubleDQN.load(tmp_path / "r" / "checkpoints" / "last" / "model.zip", device="cpu")
    assert isinstance(model.q_net.features_extractor, CarRacingCNN)
    assert [m.out_features for m in model.q_net.q_net if isinstance(m, th.nn.Linear)] == [64, 12]
