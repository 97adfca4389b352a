"""Env x algorithm pairs at the agent factory (every algorithm, one env of each kind), as the regression matrix's function tier checks them
(``check_pairs``: the fast overrides): built, or refused (``Incompatible``) exactly where the expected
refusals (``conf/refused_pairs.yaml``, the tier's own file) say, each refusal naming both; anything else
wrong with a config (a bad value, an unknown argument, a misspelt class) is a plain UserError, never a
refusal. Training the pairs the factory accepts for one short epoch, then a save -> load -> predict round
trip, is that tier's job (``./run_testing.sh -t function``: every pair; the last step of ``make test``, with ``-c``:
a covering set, after checking every pair at the factory); here only what the factory decides."""

import pytest

from hydrarl.agents.factory import build_agent
from hydrarl.config.compose import available
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import Incompatible, MissingDependency, UserError
from hydrarl.launchers.matrix import FUNCTION_TRAINER
from hydrarl.launchers.pairs import ENV_KINDS, REFUSED, ExpectedRefusals, check_pairs, pair_problems
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg, fast_overrides

ALGORITHMS = available("algorithm")
# One env of each kind the refusal groups tell apart (the function tier's ENV_KINDS). Every env of the tree is checked
# against the same file by the function tier, the last step of `make test`, which therefore deselects the test below
# (it would build these pairs twice); it runs when pytest runs alone.
ENVS = list(ENV_KINDS)


def test_the_sample_of_envs_exists():
    assert set(ENVS) <= set(available("env"))


@pytest.fixture(scope="module")
def expected():
    """The expected refusals (loading checks that every env and algorithm they name exists)."""
    return ExpectedRefusals.load()


@pytest.mark.parametrize("env", ENVS)
def test_the_factory_builds_or_refuses_every_pair_as_the_expected_refusals_say(env, expected):
    """As the function tier decides which pairs it trains: no pair fails to build, every refusal is listed in
    the expected refusals and every listed pair is refused; each refusal names the env and the algorithm."""
    checks = check_pairs([(env, algorithm) for algorithm in ALGORITHMS])
    problems = pair_problems(checks, expected)
    assert not problems, "\n".join(problems)
    unnamed = {pair: check.reason for pair, check in checks.items()
               if check.outcome == REFUSED and (env not in check.reason or pair[1] not in check.reason)}
    assert not unnamed, f"refusals that do not name both the env and the algorithm: {unnamed}"


@pytest.fixture(scope="module")
def pendulum():
    env = make_vec_env(compose_cfg(["env=Pendulum"]).env, 0)
    yield env
    env.close()


# Faults of an algorithm config, whichever env it meets: a UserError naming what is wrong, not a refusal. Composed
# without the value checks of hydrarl.config.validate (which catch some of these first), as the factory may meet them.
@pytest.mark.parametrize(("overrides", "says"), [
    (["algorithm.learning_rate=not_a_number"], "learning rate schedule must be a float"),
    (["~algorithm.learning_rate", "+algorithm.lr=0.001"], "has no argument lr"),
    (["algorithm._target_=stable_baselines3.SACX"], "cannot import _target_ stable_baselines3.SACX"),
    (["algorithm._target_=hydrarl.agents.no_such_module.Agent"], "cannot import _target_ hydrarl.agents.no_such_module"),
    (["algorithm.policy=MlpPolicyy"], "has no policy 'MlpPolicyy'"),
    (["algorithm.policy_kwargs.net_arch=[-64]"], "algorithm.policy_kwargs={'net_arch': [-64]} cannot build the policy"),
    (["+algorithm.policy_kwargs.colour=red"], "algorithm.policy_kwargs="),
])
def test_a_fault_of_the_algorithm_config_is_a_user_error_not_a_refusal(overrides, says, pendulum):
    cfg = compose_cfg(["env=Pendulum", "algorithm=sac", *fast_overrides("sac"), *overrides], check=False)
    with pytest.raises(UserError) as fault:
        build_agent(cfg.algorithm, pendulum, 0, "cpu", name="sac", env_name="Pendulum")
    assert not isinstance(fault.value, Incompatible | MissingDependency), f"counted as a refusal: {fault.value}"
    assert says in str(fault.value) and "algorithm=sac" in str(fault.value)


def test_a_class_from_a_package_not_installed_is_a_missing_dependency(pendulum):
    cfg = compose_cfg(["env=Pendulum", "algorithm=sac", "algorithm._target_=no_such_package_here.SAC"], check=False)
    with pytest.raises(MissingDependency, match="no_such_package_here"):
        build_agent(cfg.algorithm, pendulum, 0, "cpu", name="sac", env_name="Pendulum")


# One refusal of each kind the factory makes (action space, HER without goals, policy for the observations,
# action noise without Box actions, a controller for another env), through a whole run as train.py starts it.
@pytest.mark.parametrize(("env", "algorithm"), [
    ("CartPole", "sac"), ("Pendulum", "td3_her"), ("FetchReach", "dqn"), ("CarRacing", "td3"), ("Pendulum", "pid"),
    ("FetchReach", "per_ddqn"),
])
def test_a_refused_pair_stops_a_run_before_anything_is_written(env, algorithm, tmp_path):
    cfg = compose_cfg([f"env={env}", f"algorithm={algorithm}", *FUNCTION_TRAINER, *fast_overrides(algorithm)])
    with pytest.raises(Incompatible) as refusal:
        run(cfg, tmp_path / "run")
    assert env in str(refusal.value) and algorithm in str(refusal.value)
    assert not (tmp_path / "run" / "checkpoints").exists(), "a refused pair must leave no checkpoint"


def test_an_sb3_constructor_check_names_the_config_key(pendulum):
    """SB3's own checks in a constructor (PPO asserts batch_size > 1) become a UserError naming the key they concern,
    its value and SB3's words on what is allowed; a fault of the config, not a refusal."""
    cfg = compose_cfg(["env=Pendulum", "algorithm=ppo", "algorithm.batch_size=1"], check=False)
    with pytest.raises(UserError) as fault:
        build_agent(cfg.algorithm, pendulum, 0, "cpu", name="ppo", env_name="Pendulum")
    assert not isinstance(fault.value, Incompatible | MissingDependency)
    assert str(fault.value).startswith("algorithm.batch_size=1 is not allowed for algorithm=ppo (PPO) (env=Pendulum): ")
    assert "must be greater than 1" in str(fault.value)
