"""The config tree: every option composes, algorithm files hold only constructor arguments, value checks."""

import re

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from hydrarl.agents.factory import accepted_kwargs
from hydrarl.config import validate
from hydrarl.config.compose import available
from hydrarl.config.validate import check_algorithm
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
    accepted = set(accepted_kwargs(get_class(cfg.algorithm._target_)))  # MirrorPPO's include PPO's, which it passes on
    keys = set(cfg.algorithm) - {"_target_"}
    assert keys <= accepted, f"{algorithm}: not constructor arguments: {keys - accepted}"


@pytest.mark.parametrize("env", available("env"))
def test_env_config_has_the_contract_keys(env):
    cfg = compose_cfg([f"env={env}"])
    assert set(cfg.env) - {"episode_metrics"} == ENV_KEYS  # episode_metrics: optional, the env's own eval/<name>s
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
        ("trainer.device=cuda:x", "trainer.device='cuda:x' is not allowed"),
        ("trainer.early_stop.threshold=high", "trainer.early_stop.threshold"),
        ("trainer.early_stop.last_n=0", "trainer.early_stop.last_n"),
        ("env.n_envs=0", "env.n_envs"),
        ("env.vec_env=threads", "env.vec_env"),
        ("seed=-3", "seed"),
        ("algorithm.batch_size=-4", "algorithm.batch_size=-4 is not allowed: an integer >= 1"),
        ("algorithm.batch_size=2.5", "algorithm.batch_size=2.5 is not allowed: an integer >= 1"),
        ("algorithm.gamma=1.5", "algorithm.gamma=1.5 is not allowed: a number in [0, 1]"),
        ("algorithm.buffer_size=0", "algorithm.buffer_size=0 is not allowed: an integer >= 1"),
        ("algorithm.tau=0", "algorithm.tau=0 is not allowed: a number in (0, 1]"),
        ("algorithm.learning_rate=fast", "algorithm.learning_rate='fast' is not allowed: a number > 0, or a schedule"),
        ("algorithm.ent_coef=-0.1", "algorithm.ent_coef=-0.1 is not allowed: a number >= 0, or 'auto'"),
        ("algorithm.train_freq=[4,epoch]", "algorithm.train_freq=[4, 'epoch'] is not allowed: an integer >= 1, or [n, step]"),
        ("algorithm.gradient_steps=0", "algorithm.gradient_steps=0 is not allowed: an integer >= 1, or -1"),
        ("algorithm.learning_starts=-1", "algorithm.learning_starts=-1 is not allowed: an integer >= 0"),
        ("trainer.metric=reward", "trainer.metric='reward' is not allowed: a metric the run logs"),
        ("trainer.early_stop.metric=score", "trainer.early_stop.metric='score' is not allowed"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, needle):
    with pytest.raises(UserError, match=re.escape(needle)) as info:
        validate(compose_cfg(["env=Pendulum", "algorithm=sac", override]))
    assert "allowed" in str(info.value)


@pytest.mark.parametrize("algorithm", available("algorithm"))
def test_every_algorithm_default_passes_the_value_table(algorithm):
    for env in ("Pendulum", "CartPole", "FetchReach"):
        check_algorithm(compose_cfg([f"env={env}", f"algorithm={algorithm}"]).algorithm)


@pytest.mark.parametrize("override", ["algorithm.train_freq=[1,episode]", "algorithm.gradient_steps=-1", "algorithm.ent_coef=auto_0.1",
                                      "algorithm.gamma=1", "algorithm.learning_starts=0", "trainer.metric=train/actor_loss"])
def test_edge_values_sb3_accepts_are_allowed(override):
    validate(compose_cfg(["env=Pendulum", "algorithm=sac", override]))


def test_an_eval_metric_without_evaluation_is_refused():
    with pytest.raises(UserError, match=r"trainer\.metric=eval/mean_reward is never logged with trainer\.n_test_rollouts=0"):
        validate(compose_cfg(["trainer.metric=eval/mean_reward", "trainer.n_test_rollouts=0"]))
