"""Tuned pairs have one home, ``conf/experiment/<Env>/<algo>.yaml`` (``+experiment=<Env>/<algo>``): each
composes for its pair, the bars and search presets that use one compose to the config they had when
they spelled the settings out, and shared files (``conf/search/_defaults.yaml``) are no options."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from hydrarl.config.compose import available, compose
from hydrarl.errors import UserError
from hydrarl.launchers.matrix import BARS_DIR, Bar
from tests.helpers.cli import run_cli

# The bars' overrides before the settings moved into conf/experiment/ (with "logger=[]" in front).
OLD_BAR_OVERRIDES = {
    "CarRacing/per_ddqn": [
        "algorithm.learning_rate=0.001", "algorithm.buffer_size=150000", "algorithm.learning_starts=1000", "algorithm.batch_size=20",
        "algorithm.gamma=0.95", "algorithm.train_freq=1", "algorithm.gradient_steps=1", "algorithm.target_update_interval=1000",
        "algorithm.exploration_fraction=0.05", "algorithm.exploration_initial_eps=1.0", "algorithm.exploration_final_eps=0.1",
        "+algorithm.optimize_memory_usage=true", "+algorithm.replay_buffer_kwargs={handle_timeout_termination:false}",
        "algorithm.loss=mse", "algorithm.prioritization=proportional", "algorithm.policy_kwargs.net_arch=[64]",
        "+algorithm.policy_kwargs.features_extractor_class={_target_:hydra.utils.get_class,path:hydrarl.agents.networks.CarRacingCNN}",
        "+algorithm.policy_kwargs.features_extractor_kwargs={features_dim:216}",
    ],
    "FetchPush/sac_her": ["algorithm.policy_kwargs.net_arch=[256,256]", "algorithm.policy_kwargs.n_critics=2", "algorithm.tau=0.05"],
}


def resolved(cfg) -> dict:
    return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("env", "algorithm", "trainer")}


@pytest.mark.parametrize("name", available("experiment"))
def test_each_experiment_composes_for_its_pair(name):
    cfg = compose([f"+experiment={name}"])
    assert f"{cfg.env_name}/{cfg.algorithm_name}" == name


@pytest.mark.parametrize("name", sorted(OLD_BAR_OVERRIDES))
def test_a_bar_using_an_experiment_runs_the_config_it_ran_before(name):
    bar = Bar.load(BARS_DIR / f"{name}.yaml")
    assert f"+experiment={name}" in bar.overrides
    before = dataclasses.replace(bar, overrides=("logger=[]", *OLD_BAR_OVERRIDES[name]))
    assert resolved(compose(bar.run_overrides(seed=1))) == resolved(compose(before.run_overrides(seed=1)))


def test_the_carracing_search_preset_runs_the_experiment():
    """One run of +search=CarRacing/per_ddqn (no --multirun) is the experiment's run."""
    assert resolved(compose(["+search=CarRacing/per_ddqn"])) == resolved(compose(["+experiment=CarRacing/per_ddqn"]))


def test_shared_defaults_are_no_options():
    assert not any(name.startswith("_") or "/_" in name for name in available("search") + available("experiment"))
    with pytest.raises(UserError, match="search=_defaults is unknown"):
        compose(["+search=_defaults"])


def test_an_unknown_experiment_lists_the_experiments(tmp_path):
    with pytest.raises(UserError, match="experiment=Pendulum/nope is unknown. Available experiment options: Bumps/rsac, CarRacing/per_ddqn"):
        compose(["+experiment=Pendulum/nope"])
    proc = run_cli(["+experiment=Pendulum/nope"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "experiment=Pendulum/nope is unknown" in proc.stderr and "FetchPush/sac_her" in proc.stderr
