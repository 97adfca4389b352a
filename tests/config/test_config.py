"""The config tree: every option composes, algorithm files hold only constructor arguments, value checks."""

import inspect

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from hydrarl.config import validate
from hydrarl.config.compose import available
from hydrarl.errors import UserError
from tests.helpers.compose import compose_cfg

ENV_KEYS = {"id", "kwargs", "wrappers", "n_envs", "vec_env", "max_episode_steps", "normalize", "policy"}


def test_groups_hold_the_required_options():
    assert set(available("algorithm")) >= {
        "sac", "td3", "ddpg", "dqn", "ppo", "a2c", "tqc", "qrdqn", "trpo", "ars", "recurrent_ppo", "crossq",
        "sac_her", "td3_her", "ddpg_her", "tqc_her", "random", "constant", "per_ddqn", "pid", "human",
    }
    assert set(available("env")) >= {
        "FetchReach", "FetchPush", "FetchSlide", "FetchPickAndPlace", "FetchReachDense",
        "Pendulum", "CartPole", "MountainCarContinuous", "LunarLander", "HalfCheetah", "Ant",
        "CarRacing", "CarRacingContinuous",
    }
    assert set(available("logger")) == {"mlflow", "comet", "csv", "tensorboard"}


@pytest.mark.parametrize("algorithm", available("algorithm"))
def test_algorithm_config_is_target_plus_constructor_kwargs(algorithm):
    cfg = compose_cfg([f"algorithm={algorithm}", "env=Pendulum"])
    cls = get_class(cfg.algorithm._target_)
    accepted = set(inspect.signature(cls.__init__).parameters)
    keys = set(cfg.algorithm) - {"_target_"}
    assert keys <= accepted, f"{algorithm}: not constructor arguments: {keys - accepted}"


@pytest.mark.parametrize("env", available("env"))
def test_env_config_has_the_contract_keys(env):
    cfg = compose_cfg([f"env={env}"])
    assert set(cfg.env) == ENV_KEYS
    assert cfg.env_name == env
    validate(cfg)


def test_default_run_is_fetchreach_sac_her_with_mlflow():
    cfg = compose_cfg([])
    assert (cfg.env_name, cfg.algorithm_name) == ("FetchReach", "sac_her")
    assert list(cfg.logger) == ["mlflow"]
    assert cfg.logger.mlflow.experiment_name == "FetchReach"
    assert OmegaConf.to_container(cfg.algorithm.policy_kwargs) == {"net_arch": [64, 64], "n_critics": 1}


def test_recurrent_policy_follows_the_env_observation_kind():
    assert compose_cfg(["algorithm=recurrent_ppo", "env=CartPole"]).algorithm.policy == "MlpLstmPolicy"
    assert compose_cfg(["algorithm=recurrent_ppo", "env=FetchReach"]).algorithm.policy == "MultiInputLstmPolicy"


def test_logger_multi_select():
    cfg = compose_cfg(["logger=[mlflow,csv,tensorboard]"])
    assert set(cfg.logger) == {"mlflow", "csv", "tensorboard"}
    assert len(compose_cfg(["logger=[]"]).logger) == 0


def test_trainer_seed_is_gone_and_says_to_use_seed():
    with pytest.raises(UserError, match=r"use seed=3"):
        validate(compose_cfg(["+trainer.seed=3"]))


@pytest.mark.parametrize(
    "override, needle",
    [
        ("trainer.n_epochs=0", "trainer.n_epochs"),
        ("trainer.eval_after_n_steps=-5", "trainer.eval_after_n_steps"),
        ("trainer.n_test_rollouts=1.5", "trainer.n_test_rollouts"),
        ("trainer.device=tpu", "trainer.device"),
        ("trainer.early_stop.threshold=high", "trainer.early_stop.threshold"),
        ("trainer.early_stop.last_n=0", "trainer.early_stop.last_n"),
        ("env.n_envs=0", "env.n_envs"),
        ("env.vec_env=threads", "env.vec_env"),
        ("seed=-3", "seed"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, needle):
    with pytest.raises(UserError, match=needle.replace(".", r"\.")) as info:
        validate(compose_cfg([override]))
    assert "allowed" in str(info.value)
