"""Shared fixtures: compose the real config tree, run real short trainings, call the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.config import CONF_DIR, PROJECT_ROOT

TRAIN = PROJECT_ROOT / "experiment" / "train.py"

# Small enough that one epoch takes a second or two, large enough that every agent updates.
FAST_ALGORITHM = {
    "learning_starts": 50,
    "batch_size": 32,
    "buffer_size": 2000,
    "n_steps": 32,
    "n_delta": 2,
}


def compose_cfg(overrides: list[str]) -> DictConfig:
    """Compose ``conf/main.yaml`` as ``experiment/train.py`` would, with HydraConfig set."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("main", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def fast_overrides(algorithm: str) -> list[str]:
    """Overrides that shrink an algorithm's warm-up and batch sizes (only keys its config has)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        algo = compose("main", overrides=[f"algorithm={algorithm}", "env=Pendulum"]).algorithm
    return [f"algorithm.{k}={v}" for k, v in FAST_ALGORITHM.items() if k in algo]


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``python experiment/train.py <args>`` in a subprocess; stdout+stderr captured as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(TRAIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env, **kwargs
    )
