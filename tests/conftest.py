"""Fixtures only; what tests share besides fixtures is in ``tests/helpers/``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.training.backends import set_up_backends

# One thread per test process, as train.py runs (trainer.torch_threads): pytest runs 3 workers on 2 cores, and a
# worker's in-process training with torch's default threads competes with the others for them. JAX, when a test
# imports it, gets a run's settings too, so what it compiles lands in the cache the function tier's jobs read.
os.environ.setdefault("OMP_NUM_THREADS", "1")
set_up_backends(1, "cpu")

pytest_plugins = [
    "tests.helpers.carracing_frames",  # its `venv` fixture: one CarRacing-v3 copy per test module
    "tests.helpers.recorded_run",  # its `recorded_run` fixture: one recorded train.py run per session, all workers
]


@pytest.fixture
def menagerie(monkeypatch) -> str:
    """Cassie's model (tests/helpers/menagerie.py) in ``MENAGERIE_ROOT`` for this test; skips the test without it."""
    from tests.helpers.menagerie import MENAGERIE, skip_without_cassie

    skip_without_cassie()
    monkeypatch.setenv("MENAGERIE_ROOT", MENAGERIE)
    return MENAGERIE


@pytest.fixture(autouse=True, scope="session")
def sb3_default_logdir(tmp_path_factory) -> None:
    """Tests that call an SB3 ``learn`` themselves get SB3's default logger, which makes an empty
    ``SB3-<time>`` directory per call in the system temp dir (hundreds a session); put them in pytest's."""
    os.environ.setdefault("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3")))


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A real single-node SLURM cluster (tests/helpers/slurm_cluster.py) for one test module, its environment
    (``SLURM_CONF``) in os.environ meanwhile: submitit runs sbatch, squeue, sacct and scancel with it."""
    from tests.helpers.slurm_cluster import SlurmUnavailable, slurm_cluster

    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(slurm_cluster(tmp_path_factory.mktemp("slurm")))
        except SlurmUnavailable as reason:
            pytest.skip(str(reason))
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for name, value in cluster.env.items():
            patch.setenv(name, value)
        yield cluster
