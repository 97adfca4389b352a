"""``check_command_line``: what a whole command line is checked for before anything runs — its text, every
job of a grid, sweeps of hydra.* keys — and the value checks of wrapper targets and metric names."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from hydrarl.config.compose import check_command_line
from hydrarl.config.validate import EVAL_METRICS, check_metrics, check_wrapper_target, env_eval_metrics
from hydrarl.errors import UserError

PAIR = ["env=Pendulum", "algorithm=sac"]


@pytest.mark.parametrize("override, needles", [
    ("trainer.n_epochs=[1,", ("'trainer.n_epochs=[1,'", "no viable alternative")),
    ("algorithm.gamma=choice()", ("'algorithm.gamma=choice()'", "empty choice is not legal")),
])
def test_an_unparsable_override_is_one_line_naming_it(override, needles):
    with pytest.raises(UserError) as info:
        check_command_line([*PAIR, override], multirun=True)
    message = str(info.value)
    assert "\n" not in message and message.startswith("cannot parse the override ")
    assert all(n in message for n in needles)


@pytest.mark.parametrize("sweeps, bad", [
    (["seed=1,-1"], "seed=-1 is not allowed"),
    (["trainer.n_epochs=1,0"], "trainer.n_epochs=0 is not allowed"),
    (["seed=1,2", "trainer.n_test_rollouts=1,0", "trainer.metric=eval/mean_reward"], "trainer.metric=eval/mean_reward is never logged"),
])
def test_every_job_of_a_grid_is_checked_not_only_the_first(sweeps, bad):
    """The bad value is in a later job (or only in a combination of two keys): refused before any job runs."""
    with pytest.raises(UserError, match=bad):
        check_command_line([*PAIR, *sweeps], multirun=True)


def test_a_good_grid_returns_its_first_jobs_config():
    cfg = check_command_line([*PAIR, "seed=3,4", "algorithm=sac,td3"], multirun=True)
    assert (cfg.seed, cfg.algorithm_name) == (3, "sac")


def test_a_search_checks_the_first_value_of_its_sweeps_only():
    """A search's sweeps are its space (the sweeper checks that); the grid check is for the basic sweeper."""
    cfg = check_command_line(["+search=Pendulum/sac", "algorithm.gamma=choice(0.9,1.5)"], multirun=True)
    assert cfg.algorithm.gamma == 0.9


def test_sweep_values_for_a_hydra_key_are_refused_with_the_way_to_search():
    with pytest.raises(UserError, match="nope.key"):  # the searched key is checked first
        check_command_line(["+search=Pendulum/sac", "+hydra.sweeper.params.nope.key=choice(1,2)"], multirun=True)
    with pytest.raises(UserError) as info:
        check_command_line(["+search=Pendulum/sac", "+hydra.sweeper.params.algorithm.gamma=choice(0.9,0.99)"], multirun=True)
    assert str(info.value) == ("'+hydra.sweeper.params.algorithm.gamma=choice(0.9,0.99)' gives sweep values to a hydra.* key, "
                               "which Hydra does not allow; to search algorithm.gamma, give it on the command line: "
                               "algorithm.gamma=choice(0.9,0.99).")


def test_plain_hydra_overrides_are_composed_with_the_run():
    """hydra.* keys (Hydra's settings, not config keys of a run) are composed with the run's overrides: valid ones pass,
    a value of the wrong type is a UserError in Hydra's words, before anything runs."""
    check_command_line([*PAIR, "hydra.job.chdir=false"], multirun=False)
    cfg = check_command_line([*PAIR, "hydra.run.dir=/tmp/somewhere"], multirun=False)
    assert cfg.env_name == "Pendulum"
    with pytest.raises(UserError, match="hydra.job.chdir=maybe: Value 'maybe' is not a valid bool"):
        check_command_line([*PAIR, "hydra.job.chdir=maybe"], multirun=False)


@pytest.mark.parametrize("entry, needle", [
    ({"_target_": "nowhere.Wrapper"}, "env.wrappers.0._target_=nowhere.Wrapper cannot be found (No module named 'nowhere')"),
    ({"_target_": "gymnasium.wrappers.Nope"}, "env.wrappers.0._target_=gymnasium.wrappers.Nope cannot be found"),
    ({"only": "train"}, "env.wrappers.0 must be a {_target_: <module>.<Wrapper>, ...} entry"),
])
def test_a_wrapper_target_that_cannot_be_imported_is_refused(entry, needle):
    with pytest.raises(UserError) as info:
        check_wrapper_target(OmegaConf.create(entry), 0)
    assert str(info.value).startswith(needle)


def test_an_importable_wrapper_target_passes():
    check_wrapper_target(OmegaConf.create({"_target_": "gymnasium.wrappers.ClipAction"}), 0)
    check_wrapper_target(OmegaConf.create({"_target_": "hydrarl.envs.carracing.FrameSkip", "skip": 2}), 0)


def test_an_eval_name_the_evaluation_never_logs_is_refused_before_the_run():
    cfg = check_command_line(PAIR, multirun=False)
    cfg.trainer.metric = "eval/nope"
    with pytest.raises(UserError) as info:
        check_metrics(cfg)
    assert "trainer.metric='eval/nope' is not allowed" in str(info.value)
    assert all(name in str(info.value) for name in EVAL_METRICS)
    for name in EVAL_METRICS:  # eval/success_rate too: only the first evaluation shows whether the env reports it
        cfg.trainer.metric = name
        check_metrics(cfg)


def test_an_env_of_its_own_module_may_log_eval_names_of_its_own():
    """Cassie, PenguinPi: eval/<name> from info["episode_metrics"]; listed in the env config, they are checked."""
    assert env_eval_metrics(OmegaConf.create({"id": "Pendulum-v1"})) == EVAL_METRICS
    assert env_eval_metrics(OmegaConf.create({"id": "hydrarl.envs.cassie:Cassie-v0"})) is None
    listed = env_eval_metrics(OmegaConf.create({"id": "hydrarl.envs.penguinpi:PenguinPi-v0", "episode_metrics": ["distance"]}))
    assert listed == (*EVAL_METRICS, "eval/distance")
    cfg = check_command_line(["env=PenguinPi", "algorithm=ppo"], multirun=False)
    cfg.trainer.metric = "eval/distance"
    check_metrics(cfg)
