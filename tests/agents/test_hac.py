"""HAC (hydrarl.agents.hac) on the real FetchReach: time scales, the penalty target (-H, not bootstrapped), hindsight
actions, both layers filled and trained, the hierarchy held across predict calls, save/load with 2 and 3 layers and
a checkpoint round trip with both buffers."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3.sac import sac as sac_module

from hydrarl.agents.factory import apply_env_overrides, build_agent
from hydrarl.agents.hac import HAC
from hydrarl.agents.hac_layers import resolve_time_scales
from hydrarl.config.compose import compose
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import Incompatible, UserError
from hydrarl.training.callbacks import capture_sb3_logs
from hydrarl.training.checkpoint import TrainerState, load_checkpoint, save_checkpoint

SMALL = ["algorithm.learning_starts=50", "algorithm.batch_size=32", "algorithm.buffer_size=20000",
         "algorithm.layer_kwargs.policy_kwargs.net_arch=[32,32]"]


def fetch_hac(*overrides: str, env_name: str = "FetchReach", seed: int = 0):
    """A HAC built by the factory as train.py builds it (env overrides applied), and its env."""
    cfg = compose([f"env={env_name}", "algorithm=hac", *SMALL, *overrides])
    apply_env_overrides(cfg.algorithm, cfg.env, "hac")
    env = make_vec_env(cfg.env, seed)
    return build_agent(cfg.algorithm, env, seed, "cpu", name="hac", env_name=env_name), env


@pytest.fixture(scope="module")
def trained():
    """2 layers [7, 7], every subgoal tested (so that missed ones leave penalties), 700 env steps."""
    model, env = fetch_hac("algorithm.subgoal_test_perc=1.0")
    model.logged = capture_sb3_logs(model)
    model.learn(700)
    yield model
    env.close()


def test_time_scales_resolve_the_wildcard_and_refuse_bad_lists():
    assert resolve_time_scales([-1, 7], 2, 50) == [7, 7]
    assert resolve_time_scales([5, -1], 2, 50) == [5, 10]
    assert resolve_time_scales([-1], 1, 50) == [50]
    assert resolve_time_scales([4, 3, 4], 3, None) == [4, 3, 4]
    for scales, n, needle in [([0, 7], 2, "positive integer"), ([7], 2, "1 entries for 2 layer(s)"),
                              ([-1, -1], 2, "at most one entry may be -1"), ([-1, 100], 2, "not a positive integer"),
                              ([-2, 7], 2, "positive integer")]:
        with pytest.raises(UserError, match="algorithm.time_scales") as err:
            resolve_time_scales(scales, n, 50)
        assert needle in str(err.value)


def test_the_factory_refuses_an_env_without_goals_and_names_bad_settings():
    with pytest.raises(Incompatible, match="goal-conditioned env"):
        fetch_hac(env_name="Pendulum")
    for override, needle in [("algorithm.time_scales=[0,7]", "time_scales"), ("algorithm.layer_classes=[sac,ppo]", "ppo"),
                             ("algorithm.learning_rates=[0.001]", "learning_rates"),
                             ("algorithm.goal_selection_strategy=nearest", "goal_selection_strategy")]:
        with pytest.raises(UserError, match=needle):
            fetch_hac(override)


def test_the_env_is_built_without_normalisation_and_the_log_says_so():
    cfg = compose(["env=FetchReach", "algorithm=hac"])
    assert cfg.env.normalize is not None
    lines = apply_env_overrides(cfg.algorithm, cfg.env, "hac")
    assert cfg.env.normalize is None and lines == [
        "algorithm=hac sets env.normalize=None (the env config has {'norm_obs': True, 'norm_reward': False})"]


def test_a_short_run_fills_and_trains_both_layers_and_stores_penalties(trained):
    assert trained.time_scales == [7, 7] and trained.num_timesteps == 700
    top, bottom = trained.layers
    # every transition is stored with 6 hindsight goals: 7 rows per bottom action (the last subgoal's still pending)
    assert bottom.replay_buffer.size() % 7 == 0 and 7 * (700 - 7) <= bottom.replay_buffer.size() < 7 * 700
    assert top.replay_buffer.size() > 7 * 700 // 7  # a top action per finished subgoal, and penalties
    assert top._n_updates > 0 and bottom._n_updates > 0
    rewards = top.replay_buffer.rewards[: top.replay_buffer.size(), 0]
    assert np.sum(rewards == -7.0) > 0  # tested subgoals that were missed
    logged = trained.logged.values  # what the Trainer records each epoch
    assert logged["rollout/layer0_subgoal_tests"] == 1.0 and 0 <= logged["rollout/layer0_subgoal_success"] <= 1
    assert {"train/layer0_critic_loss", "train/layer1_critic_loss", "train/layer1_actor_loss"} <= logged.keys()


def test_a_penalty_transitions_critic_target_is_minus_h_exactly(trained, monkeypatch):
    """The regression the users' framework shipped: the penalty's target must not be bootstrapped. The real SAC
    critic update of the top layer, on a batch of penalty transitions only, must regress toward -H exactly."""
    top = trained.layers[0]
    buffer = top.replay_buffer
    rows = np.flatnonzero(buffer.rewards[: buffer.size(), 0] == -7.0)
    assert len(rows) > 0 and np.all(buffer.dones[rows, 0] == 1.0)
    penalties = type(buffer)(len(rows), buffer.observation_space, buffer.action_space, device="cpu")
    for i in rows:
        penalties.add({k: v[i] for k, v in buffer.observations.items()}, {k: v[i] for k, v in buffer.next_observations.items()},
                      buffer.actions[i], buffer.rewards[i], buffer.dones[i], [{}])
    targets = []
    real_mse = sac_module.F.mse_loss

    def spy(current, target, *args, **kwargs):
        targets.append(target.detach().clone())
        return real_mse(current, target, *args, **kwargs)

    monkeypatch.setattr(sac_module.F, "mse_loss", spy)
    top.replay_buffer = penalties
    try:
        top.train(gradient_steps=1, batch_size=16)
    finally:
        top.replay_buffer = buffer
    assert targets and all(th.equal(t, th.full_like(t, -7.0)) for t in targets)


def test_a_missed_subgoal_is_stored_as_the_subgoal_achieved(trained):
    top = trained.layers[0]
    buffer = top.replay_buffer
    n = buffer.size()
    keep = buffer.rewards[:n, 0] != -7.0  # penalty rows keep the subgoal that was missed
    actions = top.policy.unscale_action(buffer.actions[:n, 0][keep])
    achieved = np.clip(buffer.next_observations["achieved_goal"][:n, 0][keep], top.action_space.low, top.action_space.high)
    gap = np.linalg.norm(actions - achieved, axis=-1)
    assert np.all(gap <= 0.05 + 1e-5)  # reached (within FetchReach's 5 cm), or replaced by what was reached
    assert np.mean(gap < 1e-5) > 0.2   # and many were replaced


def test_predict_holds_each_subgoal_for_up_to_h_steps(trained):
    env = make_vec_env(compose(["env=FetchReach", "env.normalize=null"]).env, 5)
    try:
        obs, state, start, previous = env.reset(), None, np.ones(1, dtype=bool), None
        replans = 0
        for _ in range(40):
            action, state = trained.predict(obs, state=state, episode_start=start, deterministic=True)
            subgoals, counts = state
            assert subgoals.shape == (1, 1, 3) and counts.shape == (2, 1) and 1 <= counts[1, 0] <= 7
            if previous is not None and not start[0]:
                if np.array_equal(previous[0], subgoals):  # held while the bottom counts on
                    assert counts[1, 0] == previous[1][1, 0] + 1
                else:  # a new subgoal only after H steps or once the old one was reached
                    replans += 1
                    assert counts[1, 0] == 1
                    assert previous[1][1, 0] == 7 or trained._reached(obs["achieved_goal"][0], previous[0][0, 0])[0]
            previous = (subgoals.copy(), counts.copy())
            obs, _, start, _ = env.step(action)
        assert replans >= 3
        _, fresh = trained.predict(obs, deterministic=True)  # no state: every layer chooses anew
        assert fresh[1].tolist() == [[1], [1]]
    finally:
        env.close()


@pytest.mark.parametrize("layers", [["algorithm.layer_classes=[sac,sac]"],
                                    ["algorithm.layer_classes=[sac,td3,ddpg]", "algorithm.time_scales=[-1,3,4]",
                                     "algorithm.learning_rates=[0.001,0.001,0.001]"]])
def test_save_then_load_acts_the_same(layers, tmp_path):
    model, env = fetch_hac(*layers)
    try:
        model.learn(300)
        model.save(tmp_path / "model.zip")
        again = HAC.load(tmp_path / "model.zip", env=env, device="cpu")
        assert again.time_scales == model.time_scales and again.subgoal_bounds == model.subgoal_bounds
        obs, a_state, b_state = env.reset(), None, None
        for step in range(30):
            start = np.array([step == 0])
            a, a_state = model.predict(obs, state=a_state, episode_start=start, deterministic=True)
            b, b_state = again.predict(obs, state=b_state, episode_start=start, deterministic=True)
            np.testing.assert_array_equal(a, b)
            obs, *_ = env.step(a)
    finally:
        env.close()


def test_a_checkpoint_keeps_both_buffers_and_training_continues(tmp_path):
    model, env = fetch_hac()
    try:
        model.learn(250)
        state = TrainerState(seed=0, num_timesteps=model.num_timesteps)
        save_checkpoint(tmp_path / "last", model, env, state)
        loaded, _ = load_checkpoint(tmp_path / "last", HAC, env, "cpu")
        for old, new in zip(model.layers, loaded.layers, strict=True):
            n = old.replay_buffer.size()
            assert new.replay_buffer.size() == n and n > 0
            np.testing.assert_array_equal(new.replay_buffer.actions[:n], old.replay_buffer.actions[:n])
            np.testing.assert_array_equal(new.replay_buffer.observations["observation"][:n],
                                          old.replay_buffer.observations["observation"][:n])
        updates = [layer._n_updates for layer in loaded.layers]
        assert updates == [layer._n_updates for layer in model.layers] and min(updates) > 0  # counters carry on
        loaded.learn(100, reset_num_timesteps=False)
        assert loaded.num_timesteps == 350
        assert all(layer._n_updates > before for layer, before in zip(loaded.layers, updates, strict=True))
    finally:
        env.close()


def test_a_video_frame_shows_the_current_subgoal(trained):
    from hydrarl.training.video import make_video_env

    env = make_video_env(compose(["env=FetchReach", "env.normalize=null"]).env, 3)
    try:
        obs = env.reset()
        plain = env.get_images()[0]
        trained.predict(obs, deterministic=True)
        trained.add_markers(env)
        marked = env.get_images()[0]
        again = env.get_images()[0]  # markers last one frame
    finally:
        env.close()
    assert not np.array_equal(plain, marked) and np.array_equal(plain, again)


def test_a_maze_video_frame_shows_the_subgoal_and_the_goal_space_is_the_mazes():
    """PointMaze's goals are 2-D: the subgoal is drawn on the floor plan, and the subgoals lie in the open area."""
    from hydrarl.training.video import make_video_env

    model, train_env = fetch_hac("algorithm.time_scales=[-1,20]", env_name="PointMaze")
    env = make_video_env(compose(["env=PointMaze", "env.normalize=null"]).env, 3)
    try:
        assert model.time_scales == [15, 20]
        obs = env.reset()
        plain = env.get_images()[0]
        model.predict(obs, deterministic=True)
        assert np.all(np.abs(model.shown_subgoals) <= 1.5)  # the U's open cells, in metres
        model.add_markers(env)
        marked = env.get_images()[0]
    finally:
        env.close()
        train_env.close()
    assert not np.array_equal(plain, marked)
