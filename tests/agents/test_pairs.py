"""Every env x algorithm pair, at the agent factory: it composes, and ``build_agent`` either builds the
agent or refuses with a UserError that names both, with the sizes the regression matrix's function tier
builds it with (``valid_pairs``: the fast overrides). Training every pair the factory accepts for one
short epoch, then a save -> load -> predict round trip, is that tier's job (``./run_testing.sh -t
function``, the last step of ``make test``); here only what the factory decides."""

import pytest

from hydrarl.agents.factory import build_agent
from hydrarl.agents.human import display_problem
from hydrarl.config.compose import available
from hydrarl.envs.factory import make_vec_env
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


def test_the_known_pairs_exist():
    """The sets above name only envs and algorithms of the config tree (a renamed one fails here, not silently)."""
    unknown = {(e, a) for e, a in MUST_REFUSE | MUST_TRAIN if e not in ENVS or a not in ALGORITHMS}
    assert not unknown, f"unknown env or algorithm in MUST_REFUSE/MUST_TRAIN: {sorted(unknown)}"
    assert not MUST_REFUSE & MUST_TRAIN


@pytest.fixture(scope="module")
def fast():
    """Each algorithm's fast overrides (the keys it has of ``FAST_ALGORITHM``), as the function tier sets them."""
    return {a: fast_overrides(a) for a in ALGORITHMS}


@pytest.mark.parametrize("env", ENVS)
def test_the_factory_builds_or_refuses_every_pair_naming_both(env, fast):
    """As ``valid_pairs`` decides which pairs the function tier trains: every MUST_TRAIN pair is built, no
    MUST_REFUSE pair is, and each refusal is a UserError that names the env and the algorithm."""
    valid, refused, vec_env = [], {}, None
    for algorithm in ALGORITHMS:
        cfg = compose_cfg([f"env={env}", f"algorithm={algorithm}", *fast[algorithm]])
        try:
            if vec_env is None:
                vec_env = make_vec_env(cfg.env, 0)
            build_agent(cfg.algorithm, vec_env, 0, "cpu", name=algorithm, env_name=env)
            valid.append((env, algorithm))
        except UserError as exc:
            refused[(env, algorithm)] = str(exc)
    if vec_env is not None:
        vec_env.close()
    wrongly_refused = {pair: reason for pair, reason in refused.items() if pair in MUST_TRAIN}
    assert not wrongly_refused, f"refused pairs that must train: {wrongly_refused}"
    wrongly_built = sorted(pair for pair in valid if pair in MUST_REFUSE)
    assert not wrongly_built, f"built pairs that must be refused: {wrongly_built}"
    unnamed = {pair: reason for pair, reason in refused.items() if env not in reason or pair[1] not in reason}
    assert not unnamed, f"refusals that do not name both the env and the algorithm: {unnamed}"


# One refusal of each kind the factory makes (action space, HER without goals, policy for the observations,
# action noise without Box actions, a controller for another env), through a whole run as train.py starts it.
@pytest.mark.parametrize(("env", "algorithm"), [
    ("CartPole", "sac"), ("Pendulum", "td3_her"), ("FetchReach", "dqn"), ("CarRacing", "td3"), ("Pendulum", "pid"),
    ("FetchReach", "per_ddqn"),
])
def test_a_refused_pair_stops_a_run_before_anything_is_written(env, algorithm, tmp_path):
    cfg = compose_cfg([f"env={env}", f"algorithm={algorithm}", *FUNCTION_TRAINER, *fast_overrides(algorithm)])
    with pytest.raises(UserError) as refusal:
        run(cfg, tmp_path / "run")
    assert env in str(refusal.value) and algorithm in str(refusal.value)
    assert not (tmp_path / "run" / "checkpoints").exists(), "a refused pair must leave no checkpoint"
