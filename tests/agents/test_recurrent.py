"""The recurrent off-policy agents (RSAC, RTD3, RDPG): masked losses ignore padding, the actor's hidden state is
reset per env copy at episode starts (in ``predict`` and during collection), save/load, resume through the real
command line with the episode buffer intact, and the factory's refusals. The buffer itself: test_episode_buffer.py."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.vec_env import DummyVecEnv

from hydrarl.agents.episode_buffer import EpisodeBatch
from hydrarl.agents.factory import build_agent
from hydrarl.agents.rsac import RSAC
from hydrarl.agents.rtd3 import RDPG, RTD3
from hydrarl.config.compose import compose
from hydrarl.envs.factory import make_vec_env
from hydrarl.envs.pomdp import MaskObservation
from hydrarl.errors import Incompatible, MissingDependency, UserError
from hydrarl.training.checkpoint import BUFFER, _untrim
from hydrarl.training.result import read_result
from tests.helpers.cli import run_cli

TINY = {"hidden_size": 8, "n_layers": 1, "net_arch": [16]}
CLASSES = {"rsac": RSAC, "rtd3": RTD3, "rdpg": RDPG}


def pendulum_p(n_envs: int = 1, limits: tuple[int, ...] | None = None) -> DummyVecEnv:
    """Pendulum-p (cos θ, sin θ: the velocity hidden); copy i cut at ``limits[i]`` steps when given."""
    def make(i):
        kwargs = {} if limits is None else {"max_episode_steps": limits[i]}
        return lambda: MaskObservation(gym.make("Pendulum-v1", **kwargs), keep=[0, 1])
    return DummyVecEnv([make(i) for i in range(n_envs)])


def agent(name: str, env=None, seed: int = 0, **kwargs):
    """A tiny ``name`` agent (RTD3: policy_delay 1, so that every update also steps the actor)."""
    cls = CLASSES[name]
    settings = {"learning_rate": 1e-3, "buffer_size": 1000, "learning_starts": 0, "batch_size": 1,
                **({"policy_delay": 1} if cls is RTD3 else {}), **kwargs}
    settings["policy_kwargs"] = {**TINY, **settings.get("policy_kwargs", {})}
    return cls("MlpPolicy", env or pendulum_p(), seed=seed, device="cpu", **settings)


def parameters(model) -> dict[str, th.Tensor]:
    """Every network of the policy (online and target) and, for RSAC, log α."""
    params = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
    if isinstance(model, RSAC):
        params["log_ent_coef"] = model.log_ent_coef.detach().clone()
    return params


def differing(a: dict[str, th.Tensor], b: dict[str, th.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not th.allclose(a[k], b[k], rtol=1e-5, atol=1e-6)]


def random_sequence(length: int, seed: int = 0) -> EpisodeBatch:
    """One episode of ``length`` steps (B = 1), random values, terminated at its last step."""
    g = th.Generator().manual_seed(seed)
    terminated = th.zeros(1, length)
    terminated[0, -1] = 1.0
    return EpisodeBatch(th.randn(1, length + 1, 2, generator=g), th.rand(1, length, 1, generator=g) * 2 - 1,
                        th.randn(1, length, generator=g), terminated, th.ones(1, length))


def padded(batch: EpisodeBatch, length: int, mask_padding: float = 0.0) -> EpisodeBatch:
    """``batch`` padded to ``length`` steps with garbage (not zeros), the padding's mask ``mask_padding``."""
    n = batch.actions.shape[1]
    g = th.Generator().manual_seed(99)
    pad = length - n
    return EpisodeBatch(
        th.cat([batch.observations, 3.0 + th.randn(1, pad, 2, generator=g)], dim=1),
        th.cat([batch.actions, th.full((1, pad, 1), 0.9)], dim=1),
        th.cat([batch.rewards, th.full((1, pad), 50.0)], dim=1),
        th.cat([batch.terminated, th.ones(1, pad)], dim=1),
        th.cat([batch.mask, th.full((1, pad), mask_padding)], dim=1),
    )


# -- 1. the masked losses ignore padding ---------------------------------------------------------------


# The updates draw their Gaussian noise step by step (recurrent_off_policy.step_noise), so a sequence's draws do not
# depend on how far the batch is padded; lengths that are not multiples of torch's 16-value fill blocks included.
@pytest.mark.parametrize("name, length, padded_length", [
    ("rsac", 16, 32), ("rtd3", 16, 32), ("rdpg", 7, 12), ("rsac", 7, 12), ("rtd3", 7, 13),
])
def test_one_update_is_the_same_with_or_without_masked_padding(name, length, padded_length):
    env = pendulum_p()
    short, long, leaky = agent(name, env), agent(name, env), agent(name, env)
    assert not differing(parameters(short), parameters(long))  # the same seed builds the same networks
    batch = random_sequence(length)
    th.manual_seed(5)
    short_losses = short.update(batch)
    th.manual_seed(5)
    long_losses = long.update(padded(batch, padded_length))
    th.manual_seed(5)
    leaky_losses = leaky.update(padded(batch, padded_length, mask_padding=1.0))

    expected_losses = {"rsac": {"actor_loss", "critic_loss", "ent_coef", "ent_coef_loss"}}.get(name, {"actor_loss", "critic_loss"})
    assert set(short_losses) == expected_losses  # RTD3 with policy_delay 1: the actor step ran too
    assert long_losses == pytest.approx(short_losses, rel=1e-5, abs=1e-6)
    assert not differing(parameters(short), parameters(long))
    # the padding is real data to the losses when its mask is 1: the test tells masking from luck
    assert leaky_losses["critic_loss"] != pytest.approx(short_losses["critic_loss"], rel=1e-3)
    changed = differing(parameters(short), parameters(leaky))
    assert any(k.startswith("actor_") for k in changed) and any(k.startswith("critic_summarisers.") for k in changed)


# -- 2. predict resets the hidden state per env copy ------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_predict_resets_the_state_of_the_env_copy_whose_episode_starts(cell):
    model = agent("rsac", policy_kwargs={"cell": cell, "n_layers": 2})
    policy = model.policy
    obs = np.random.default_rng(0).normal(size=(5, 2, 2)).astype(np.float32)  # (step, env copy, obs)

    state, singles = None, [None, None]
    for t in range(4):
        actions, state = policy.predict(obs[t], state, np.full(2, t == 0), deterministic=True)
        assert len(state) == (2 if cell == "lstm" else 1) and all(s.shape == (2, 2, 8) for s in state)
        for i in range(2):  # the batched copies carry their own state: as a single-env chain each
            single_action, singles[i] = policy.predict(obs[t, i:i + 1], singles[i], np.array([t == 0]), deterministic=True)
            np.testing.assert_allclose(actions[i], single_action[0], rtol=1e-5, atol=1e-6)
            for s, s_single in zip(state, singles[i], strict=True):
                np.testing.assert_allclose(s[:, i:i + 1], s_single, rtol=1e-5, atol=1e-6)

    actions, new_state = policy.predict(obs[4], state, np.array([True, False]), deterministic=True)
    fresh_action, fresh_state = policy.predict(obs[4, 0:1], None, deterministic=True)
    carried_action, carried_state = policy.predict(obs[4, 0:1], singles[0], np.array([False]), deterministic=True)
    continued_action, continued_state = policy.predict(obs[4, 1:2], singles[1], np.array([False]), deterministic=True)
    np.testing.assert_allclose(actions[0], fresh_action[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(actions[1], continued_action[0], rtol=1e-5, atol=1e-6)
    for s, fresh, continued, carried in zip(new_state, fresh_state, continued_state, carried_state, strict=True):
        np.testing.assert_allclose(s[:, 0:1], fresh, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s[:, 1:2], continued, rtol=1e-5, atol=1e-6)
        assert not np.allclose(fresh, carried, atol=1e-4)  # the memory matters: a reset is visible
    assert not np.allclose(fresh_action, carried_action, atol=1e-5)
    for s in state:  # the caller's state is not changed in place
        assert np.abs(s[:, 0]).sum() > 0


# -- 3. collection: the state and the episodes of each env copy -------------------------------------------


class Recorder(BaseCallback):
    """After each env step (before the transition is stored): what the agent acted on, its state, and the state
    ``policy.predict`` gives for each copy from a zero state (episode start) or from the previous step's state."""

    def __init__(self):
        super().__init__()
        self.steps: list[dict] = []

    def _on_step(self) -> bool:
        m = self.model
        obs, starts = m._last_obs.copy(), m._last_episode_starts.copy()
        state = tuple(s.copy() for s in m._rollout_state)
        expected, carried = [], []
        for i in range(len(obs)):
            previous = None if not self.steps else tuple(s[:, i:i + 1] for s in self.steps[-1]["state"])
            expected.append(m.policy.predict(obs[i:i + 1], None if starts[i] else previous)[1])
            carried.append(None if previous is None else m.policy.predict(obs[i:i + 1], previous)[1])
        self.steps.append({"obs": obs, "starts": starts, "state": state, "expected": expected, "carried": carried,
                           "actions": self.locals["buffer_actions"].copy(), "rewards": self.locals["rewards"].copy(),
                           "dones": self.locals["dones"].copy(),
                           "final": [info.get("terminal_observation") for info in self.locals["infos"]]})
        return True


def test_collection_resets_each_env_copys_state_when_its_episode_ends_and_stores_whole_episodes():
    model = agent("rsac", pendulum_p(2, limits=(7, 11)), learning_starts=10, batch_size=2)
    recorder = Recorder()
    model.learn(30, callback=recorder)  # 15 steps of each copy: episodes end at steps 7 and 14 (copy 0), 11 (copy 1)
    model.learn(16, callback=recorder, reset_num_timesteps=False)  # 8 more: the episodes in progress continue
    steps = recorder.steps
    assert len(steps) == 23 and model._n_updates > 0

    dones = np.array([s["dones"] for s in steps])
    assert np.flatnonzero(dones[:, 0]).tolist() == [6, 13, 20] and np.flatnonzero(dones[:, 1]).tolist() == [10, 21]
    starts = np.array([s["starts"] for s in steps])
    assert starts[0].all()
    np.testing.assert_array_equal(starts[1:], dones[:-1])  # each copy's episode start follows its own done
    np.testing.assert_array_equal(model._last_episode_starts, dones[-1])
    resets = 0
    for t, step in enumerate(steps):
        for i in range(2):
            for s, expected in zip(step["state"], step["expected"][i], strict=True):
                np.testing.assert_allclose(s[:, i:i + 1], expected, rtol=1e-5, atol=1e-6, err_msg=f"step {t}, copy {i}")
            if step["starts"][i] and t > 0:  # zeroed, not carried on from the previous episode
                resets += 1
                assert not np.allclose(step["state"][0][:, i:i + 1], step["carried"][i][0], atol=1e-4)
    assert resets == 5  # copy 0 at steps 7, 14, 21; copy 1 at 11, 22

    buffer = model.replay_buffer
    assert buffer.episode_lengths().tolist() == [7, 11, 7, 7, 11]  # in the order they ended
    for index, (copy, first, last) in enumerate([(0, 0, 6), (1, 0, 10), (0, 7, 13), (0, 14, 20), (1, 11, 21)]):
        obs, actions, rewards, terminated = buffer.episode(index)
        span = steps[first:last + 1]
        assert not terminated  # cut by a time limit: a truncation
        np.testing.assert_array_equal(obs[:-1], [s["obs"][copy] for s in span])
        np.testing.assert_array_equal(obs[-1], span[-1]["final"][copy])
        np.testing.assert_array_equal(actions, [s["actions"][copy] for s in span])
        np.testing.assert_allclose(rewards, [s["rewards"][copy] for s in span], rtol=1e-6)
    assert [len(p) for p in buffer._pending_actions] == [2, 1]

    # A new learn that resets the env drops the episodes in progress and zeroes every copy's state.
    model.learn(4, callback=recorder)
    assert recorder.steps[23]["starts"].all()
    assert [len(p) for p in buffer._pending_actions] == [2, 2] and buffer.n_episodes == 5


# -- 4. save -> load ----------------------------------------------------------------------------------------


def act(model, obs: np.ndarray) -> tuple[np.ndarray, list]:
    """Deterministic actions over a sequence of single observations, carrying the state; and the states."""
    state, actions, states = None, [], []
    for t, o in enumerate(obs):
        action, state = model.predict(o[None], state, np.array([t == 0]), deterministic=True)
        actions.append(action[0])
        states.append(state)
    return np.array(actions), states


@pytest.mark.parametrize("name, kwargs", [("rsac", {"ent_coef": "auto_0.5"}),
                                          ("rtd3", {"policy_delay": 3, "target_policy_noise": 0.3}),
                                          ("rdpg", {"policy_kwargs": {"action_input": True}})])
def test_save_load_keeps_the_policy_its_memory_and_the_training_state(name, kwargs, tmp_path):
    model = agent(name, **kwargs)
    batch = random_sequence(9, seed=3)
    th.manual_seed(0)
    model.update(batch)  # optimiser states, targets and α away from their initial values
    model.save(tmp_path / "m.zip")
    loaded = CLASSES[name].load(tmp_path / "m.zip", device="cpu")

    assert type(loaded) is CLASSES[name]
    obs = np.random.default_rng(1).normal(size=(20, 2)).astype(np.float32)
    actions, states = act(model, obs)
    loaded_actions, loaded_states = act(loaded, obs)
    np.testing.assert_array_equal(loaded_actions, actions)
    for state, loaded_state in zip(states, loaded_states, strict=True):
        for s, ls in zip(state, loaded_state, strict=True):
            np.testing.assert_array_equal(ls, s)
    assert not np.allclose(actions[5:], act(model, obs[5:])[0])  # the memory of steps 0..4 matters
    if name == "rsac":
        assert model.log_ent_coef.item() != pytest.approx(np.log(0.5))
        assert loaded.log_ent_coef.item() == model.log_ent_coef.item() and loaded.ent_coef_optimizer is not None
    elif name == "rtd3":
        assert (loaded.policy_delay, loaded.target_policy_noise, loaded.n_critics) == (3, 0.3, 2)
        assert len(loaded.policy.critic_heads) == 2 and loaded._n_updates == 1
    else:
        assert (loaded.n_critics, loaded.policy.n_critics, len(loaded.policy.critic_heads)) == (1, 1, 1)
        assert (loaded.policy_delay, loaded.target_policy_noise) == (1, 0.0)
        assert loaded.policy.action_input and len(states[0]) == 3  # the previous action is part of the memory
    assert not differing(parameters(model), parameters(loaded))
    # the optimisers' and targets' states came back too: one more identical update on both
    for m in (model, loaded):
        th.manual_seed(1)
        m.update(batch)
    assert not differing(parameters(model), parameters(loaded))


# -- 5. resume through the real command line -----------------------------------------------------------------

RUN = ["env=Pendulum-p", "algorithm=rsac", "seed=0", "trainer.n_epochs=2", "trainer.epoch_cap=1",
       "trainer.eval_after_n_steps=450", "trainer.n_test_rollouts=1", "trainer.progress_bar=false", "logger=[]",
       "env.max_episode_steps=100", "algorithm.learning_starts=200", "algorithm.batch_size=4",
       "algorithm.buffer_size=5000", "algorithm.policy_kwargs.hidden_size=8", "algorithm.policy_kwargs.n_layers=1",
       "algorithm.policy_kwargs.net_arch=[16]"]


def saved_buffer(run_dir):
    return _untrim(load_from_pkl(run_dir / "checkpoints" / "last" / BUFFER))


def test_resume_continues_with_the_episode_buffer(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli([*RUN, f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    buffer = saved_buffer(run_dir)
    assert buffer.episode_lengths().tolist() == [100] * 4  # the 5th episode was in progress (50 steps)
    assert [len(p) for p in buffer._pending_actions] == [50]
    old = [buffer.episode(i) for i in range(4)]

    resumed = run_cli([f"trainer.resume={run_dir}", "trainer.epoch_cap=2"], cwd=tmp_path, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    result = read_result(run_dir)
    assert (result["status"], result["epochs_run"], result["num_timesteps"]) == ("completed", 2, 900)
    state = json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert (state["epoch"], state["num_timesteps"]) == (2, 900)
    # an update every step from step 200 on: 250 + 450. An empty buffer would have skipped the first 100 steps.
    assert [h["train/n_updates"] for h in state["history"]] == [250, 700]

    buffer = saved_buffer(run_dir)
    # the env was reset on resume: the old in-progress episode is dropped, 4 new whole ones follow the old 4
    assert buffer.episode_lengths().tolist() == [100] * 8
    assert buffer._ep_start == [101 * i for i in range(8)]
    for i, (obs, actions, rewards, terminated) in enumerate(old):
        again = buffer.episode(i)
        np.testing.assert_array_equal(again[0], obs)
        np.testing.assert_array_equal(again[1], actions)
        np.testing.assert_array_equal(again[2], rewards)
        assert again[3] == terminated is False
    # new data, not copies of the old episodes (their first observations may repeat: the env is seeded as before)
    assert not any(np.allclose(buffer.episode(i)[1], e[1]) for i in range(4, 8) for e in old)


# -- 6. the factory refuses what the agents cannot do ---------------------------------------------------------


@pytest.mark.parametrize("env_name, algorithms", [("CartPole", ["rsac", "rtd3", "rdpg"]), ("FetchReach", ["rsac"])])
def test_the_factory_refuses_discrete_actions_and_dict_observations(env_name, algorithms):
    env = None
    try:
        for name in algorithms:
            cfg = compose([f"env={env_name}", f"algorithm={name}", "algorithm.buffer_size=1000"])
            env = env or make_vec_env(cfg.env, 0)
            with pytest.raises(Incompatible) as refusal:
                build_agent(cfg.algorithm, env, 0, "cpu", name=name, env_name=env_name)
            assert f"algorithm={name}" in str(refusal.value) and f"env={env_name}" in str(refusal.value)
    finally:
        if env is not None:
            env.close()


@pytest.fixture(scope="module")
def pendulum_env():
    env = make_vec_env(compose(["env=Pendulum-p", "algorithm=rsac"]).env, 0)
    yield env
    env.close()


@pytest.mark.parametrize("name, override, says", [
    ("rsac", "algorithm.policy_kwargs.cell=rnn", "algorithm.policy_kwargs={'cell': 'rnn'"),
    ("rsac", "algorithm.policy_kwargs.hidden_size=0", "algorithm.policy_kwargs={'cell': 'lstm', 'hidden_size': 0"),
    ("rsac", "algorithm.segment_len=0", "algorithm.segment_len=0 is not allowed"),
    ("rsac", "algorithm.batch_size=0", "algorithm.batch_size=0 is not allowed"),
    ("rdpg", "algorithm.batch_size=0", "algorithm.batch_size=0 is not allowed"),
    ("rtd3", "algorithm.policy_delay=0", "algorithm.policy_delay=0 is not allowed"),
])
def test_a_bad_value_is_a_user_error_naming_the_key(name, override, says, pendulum_env):
    cfg = compose(["env=Pendulum-p", f"algorithm={name}", "algorithm.buffer_size=1000", override], check=False)
    with pytest.raises(UserError) as fault:
        build_agent(cfg.algorithm, pendulum_env, 0, "cpu", name=name, env_name="Pendulum-p")
    assert not isinstance(fault.value, Incompatible | MissingDependency), f"counted as a refusal: {fault.value}"
    assert says in str(fault.value) and f"algorithm={name}" in str(fault.value)
    key = override.split("=")[0]
    if key in ("algorithm.batch_size", "algorithm.policy_delay"):  # the config check names them before anything is built
        with pytest.raises(UserError, match=f"{key}=0 is not allowed"):
            compose(["env=Pendulum-p", f"algorithm={name}", override])
