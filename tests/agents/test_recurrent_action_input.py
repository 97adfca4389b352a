"""``action_input``: the recurrent agents' summarisers read the previous action with the observation. The memory
carries the action actually taken (random warm-up, exploration noise), acting step by step gives the actions of the
update's one pass over the stored episode, and masked padding still changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise

from tests.agents.test_recurrent import agent, differing, padded, parameters, pendulum_p, random_sequence

WITH_ACTIONS = {"policy_kwargs": {"action_input": True}}


class LastAction(BaseCallback):
    """After each env step: the previous action in the rollout state, and the action the buffer stores."""

    def __init__(self):
        super().__init__()
        self.remembered: list[np.ndarray] = []
        self.taken: list[np.ndarray] = []

    def _on_step(self) -> bool:
        self.remembered.append(self.model._rollout_state[-1][0].copy())
        self.taken.append(self.locals["buffer_actions"].copy())
        return True


def test_the_history_pairs_each_observation_with_the_action_before_it():
    policy = agent("rtd3", **WITH_ACTIONS).policy
    obs, actions = th.randn(2, 4, 2), th.rand(2, 3, 1)
    seq = policy.history(obs, actions)
    assert seq.shape == (2, 4, 3) and policy.actor_summariser.rnn.input_size == 3
    th.testing.assert_close(seq[..., :2], obs)
    assert (seq[:, 0, 2] == 0).all()  # nothing was done before the first step
    th.testing.assert_close(seq[:, 1:, 2:], actions)
    assert agent("rtd3").policy.history(obs, actions) is obs  # off by default: the observations only


def test_the_memory_holds_the_action_taken_and_acting_matches_the_update_pass():
    noise = NormalActionNoise(np.zeros(1), np.full(1, 0.5))
    model = agent("rsac", pendulum_p(limits=(9,)), learning_starts=5, action_noise=noise, **WITH_ACTIONS)
    recorder = LastAction()
    model.learn(12, callback=recorder)  # 5 random steps, then the policy's actions with noise; an episode at step 9
    np.testing.assert_array_equal(np.array(recorder.remembered), np.array(recorder.taken))
    assert len(model._rollout_state) == 3 and model._rollout_state[2].shape == (1, 1, 1)

    obs, actions, _, _ = model.replay_buffer.episode(0)  # (10, 2), (9, 1): the actions taken, [-1, 1]-scaled
    state, stepped = None, []
    for t in range(9):
        action, state = model.policy.predict(obs[t], state, np.array([t == 0]), deterministic=True)
        stepped.append(model.policy.scale_action(action))
        state = model.policy.remember_action(state, actions[t])
    with th.no_grad():
        whole = model.policy(th.as_tensor(obs[None, :-1]), True, th.as_tensor(actions[None]))[0].numpy()
    np.testing.assert_allclose(np.array(stepped), whole, rtol=1e-5, atol=1e-5)
    # the actions are in the memory: the same observations after other actions lead elsewhere
    with th.no_grad():
        other = model.policy(th.as_tensor(obs[None, :-1]), True, th.as_tensor(-actions[None]))[0].numpy()
    assert not np.allclose(other[1:], whole[1:], atol=1e-4)


@pytest.mark.parametrize("name", ["rsac", "rtd3"])
def test_masked_padding_changes_nothing_with_action_input(name):
    env = pendulum_p()
    short, long = agent(name, env, **WITH_ACTIONS), agent(name, env, **WITH_ACTIONS)
    batch = random_sequence(7)
    th.manual_seed(5)
    short_losses = short.update(batch)
    th.manual_seed(5)
    long_losses = long.update(padded(batch, 12))
    assert long_losses == pytest.approx(short_losses, rel=1e-5, abs=1e-6)
    assert not differing(parameters(short), parameters(long))
