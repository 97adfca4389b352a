"""Shared fixtures: compose the real config tree, run real short trainings, call the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.config import PROJECT_ROOT
from hydrarl.launchers.matrix import compose_config
from hydrarl.launchers.matrix import fast_overrides as matrix_fast_overrides

pytest_plugins = ["tests.carracing_frames"]  # its `venv` fixture: one CarRacing-v3 copy per test module

TRAIN = PROJECT_ROOT / "experiment" / "train.py"
compose_cfg = compose_config  # conf/main.yaml composed as experiment/train.py would, HydraConfig set


def fast_overrides(algorithm: str) -> list[str]:
    """Overrides that shrink an algorithm's warm-up and batch sizes (only keys its config has)."""
    return matrix_fast_overrides(compose_config([f"algorithm={algorithm}", "env=Pendulum"]).algorithm)


@pytest.fixture(autouse=True, scope="session")
def sb3_default_logdir(tmp_path_factory) -> None:
    """Tests that call an SB3 ``learn`` themselves get SB3's default logger, which makes an empty
    ``SB3-<time>`` directory per call in the system temp dir (hundreds a session); put them in pytest's."""
    os.environ.setdefault("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3")))


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None, wrap: list[str] = (),
            **kwargs) -> subprocess.CompletedProcess:
    """``python experiment/train.py <args>`` in a subprocess (prefixed by ``wrap``, e.g. ``unshare -n``);
    stdout+stderr captured as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*wrap, sys.executable, str(TRAIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env, **kwargs
    )
