"""Every search preset composes for its pair, selects the rl_optuna sweeper, and its space parses."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydrarl.config.compose import available
from hydrarl.paths import CONF_DIR
from hydrarl.sweep.space import parse_space


@pytest.mark.parametrize("preset", available("search"))
def test_preset_composes_and_its_space_parses(preset):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("main", overrides=[f"+search={preset}"], return_hydra_config=True)
    env, algorithm = preset.split("/")
    assert cfg.hydra.runtime.choices.env == env and cfg.hydra.runtime.choices.algorithm == algorithm
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "rl_optuna"
    distributions, _ = parse_space(dict(cfg.hydra.sweeper.params))
    assert len(distributions) >= 4
    for key in distributions:  # every searched key exists in the composed config (a list entry by its index)
        node, *path = key.split(".")
        value = cfg[node]
        for part in path:
            found = int(part) < len(value) if OmegaConf.is_list(value) and part.isdigit() else part in value
            assert found, f"{preset}: {key} is not a config key"
            value = value[int(part)] if OmegaConf.is_list(value) else value[part]


def test_required_presets_exist():
    assert {"FetchReach/sac_her", "Pendulum/sac", "CartPole/dqn", "CartPole/ppo"} <= set(available("search"))
