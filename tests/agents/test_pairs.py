"""Every env x algorithm pair: it composes, and either trains for one short epoch or is refused
before training with a UserError that names both."""

import numpy as np
import pytest

from hydrarl.agents.human import display_problem
from hydrarl.config.compose import available
from hydrarl.errors import UserError
from hydrarl.launchers.matrix import FUNCTION_TRAINER
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg, fast_overrides

ENVS = available("env")
ALGORITHMS = available("algorithm")
HER = [a for a in ALGORITHMS if a.endswith("_her")]
FETCH = [e for e in ENVS if e.startswith("Fetch")]

# Pairs that must be refused, and pairs that must train (the rest may do either).
MUST_REFUSE = {
    ("CartPole", "sac"), ("LunarLander", "td3"), ("Pendulum", "dqn"), ("HalfCheetah", "qrdqn"),
    ("CartPole", "sac_her"), ("Pendulum", "td3_her"), ("FetchReach", "dqn"), ("FetchReach", "crossq"),
    ("FetchPush", "ars"),
    ("CarRacing", "sac"), ("CarRacing", "td3"), ("CarRacing", "ars"), ("CarRacing", "crossq"), ("CarRacing", "sac_her"),
    ("CarRacingContinuous", "dqn"), ("CarRacingContinuous", "qrdqn"), ("CarRacingContinuous", "ars"),
    ("CarRacingContinuous", "crossq"), ("CarRacingContinuous", "td3_her"),
    ("Pendulum", "per_ddqn"), ("FetchReach", "per_ddqn"), ("CarRacingContinuous", "per_ddqn"),
} | {(e, "pid") for e in ENVS if e != "CarRacingContinuous"  # pid: RGB frames + Box(3) actions only
} | {(e, "human") for e in ENVS if e != "CarRacingContinuous" or display_problem()}  # human: there only, with a screen
MUST_TRAIN = {(e, a) for e in FETCH for a in HER} | {
    (e, a) for e in ("CartPole", "LunarLander") for a in ("dqn", "qrdqn", "ppo", "a2c", "trpo", "ars", "recurrent_ppo")
} | {(e, a) for e in ("Pendulum", "MountainCarContinuous", "HalfCheetah", "Ant") for a in ("sac", "td3", "ddpg", "tqc", "crossq", "ppo", "a2c", "trpo", "ars", "recurrent_ppo")
} | {(e, "per_ddqn") for e in ("CartPole", "LunarLander", "CarRacing")
} | {("CarRacing", a) for a in ("dqn", "qrdqn", "ppo", "a2c", "trpo", "recurrent_ppo")
} | {("CarRacingContinuous", a) for a in ("sac", "td3", "ddpg", "tqc", "ppo", "a2c", "trpo", "recurrent_ppo")
} | {(e, a) for e in ENVS for a in ("random", "constant")}  # controllers act in every env
MUST_TRAIN |= {("CarRacingContinuous", "pid")}


def short_run_overrides(env: str, algorithm: str) -> list[str]:
    return [f"env={env}", f"algorithm={algorithm}", *FUNCTION_TRAINER, *fast_overrides(algorithm)]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("env", ENVS)
def test_pair(env, algorithm, tmp_path):
    cfg = compose_cfg(short_run_overrides(env, algorithm))
    try:
        result = run(cfg, tmp_path / "run")
    except UserError as exc:
        assert (env, algorithm) not in MUST_TRAIN, f"{env} x {algorithm} refused: {exc}"
        assert env in str(exc) and algorithm in str(exc)
        assert not (tmp_path / "run" / "checkpoints").exists(), "a refused pair must leave no checkpoint"
        return
    assert (env, algorithm) not in MUST_REFUSE, f"{env} x {algorithm} should have been refused"
    assert result.status == "completed" and result.epochs_run == 1
    assert result.num_timesteps >= 100
    assert np.isfinite(result.metrics["eval/mean_reward"])
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.zip").is_file()
