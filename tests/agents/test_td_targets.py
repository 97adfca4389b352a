"""n-step TD targets of the recurrent agents (``td_steps``): the sums, where they stop, and padding."""

from __future__ import annotations

import pytest
import torch as th

from hydrarl.agents.recurrent_off_policy import td_targets
from hydrarl.config.compose import compose
from hydrarl.errors import UserError
from tests.agents.test_recurrent import agent, differing, padded, parameters, pendulum_p, random_sequence

# Two sequences: the first terminates at its 4th step; the second is 2 real steps (a time limit or a segment's end,
# so it bootstraps) and 2 padded ones. V holds the value of the step after each t.
REWARDS = th.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 0.0, 0.0]])
TERMINATED = th.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
MASK = th.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
NEXT_VALUES = th.tensor([[10.0, 20.0, 30.0, 40.0], [5.0, 6.0, 99.0, 99.0]])


@pytest.mark.parametrize("td_steps, expected", [
    # y_t = r_t + γ (1 - d_t) V_{t+1}, γ = 0.5
    (1, [[6.0, 12.0, 18.0, 4.0], [3.5, 4.0]]),
    # y_0 = 1 + 0.5·2 + 0.25·20; the third step's sum stops at the termination: 3 + 0.5·4;
    # the short sequence: 1 + 0.5·1 + 0.25·6 (bootstraps from its last next value), then 1 + 0.5·6
    (2, [[7.0, 11.0, 5.0, 4.0], [3.0, 4.0]]),
    # longer than any sequence: discounted reward sums to the termination; the short one bootstraps at its end
    (10, [[3.25, 4.5, 5.0, 4.0], [3.0, 4.0]]),
])
def test_n_step_targets_sum_rewards_and_stop_at_a_termination_or_the_sequence_end(td_steps, expected):
    targets = td_targets(REWARDS, NEXT_VALUES.unsqueeze(-1), TERMINATED, MASK, 0.5, td_steps)
    assert targets.shape == (2, 4, 1)
    assert targets[0, :, 0].tolist() == pytest.approx(expected[0])
    assert targets[1, :2, 0].tolist() == pytest.approx(expected[1])  # padded steps are masked by the losses


def test_one_step_targets_are_the_one_step_td_formula():
    g = th.Generator().manual_seed(3)
    rewards, values = th.randn(4, 9, generator=g), th.randn(4, 9, 1, generator=g)
    terminated = (th.rand(4, 9, generator=g) < 0.2).float()
    expected = rewards.unsqueeze(-1) + 0.9 * (1.0 - terminated.unsqueeze(-1)) * values
    assert th.allclose(td_targets(rewards, values, terminated, th.ones(4, 9), 0.9, 1), expected)


@pytest.mark.parametrize("name, length, padded_length", [("rsac", 9, 16), ("rtd3", 7, 13)])
def test_an_n_step_update_is_the_same_with_or_without_masked_padding(name, length, padded_length):
    env = pendulum_p()
    short, long, one_step = agent(name, env, td_steps=4), agent(name, env, td_steps=4), agent(name, env)
    batch = random_sequence(length)
    losses = []
    for model, data in ((short, batch), (long, padded(batch, padded_length)), (one_step, batch)):
        th.manual_seed(5)
        losses.append(model.update(data))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5, abs=1e-6)
    assert not differing(parameters(short), parameters(long))
    # the sums reach past one step: the critics learn something else than with one-step targets
    assert losses[2]["critic_loss"] != pytest.approx(losses[0]["critic_loss"], rel=1e-3)


@pytest.mark.parametrize("td_steps", [0, -1, 2.5, True])
def test_a_bad_td_steps_is_refused(td_steps):
    with pytest.raises(ValueError, match="td_steps must be a positive integer"):
        agent("rsac", pendulum_p(), td_steps=td_steps)


def test_the_config_check_names_a_bad_td_steps():
    with pytest.raises(UserError, match=r"algorithm.td_steps=0 is not allowed"):
        compose(["env=Pendulum-p", "algorithm=rdpg", "algorithm.td_steps=0"])
