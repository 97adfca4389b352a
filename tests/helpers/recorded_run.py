"""One real recorded run, shared: ``experiment/train.py`` (Pendulum/sac, 2 epochs, a video every epoch) logged to
MLflow, to an offline Comet archive and to CSV, with no network. What a run records is read from it by
tests/trackers/test_comet.py (the archive, the MLflow videos, ``mlflow_to_comet``) and tests/launchers/test_cli.py
(the MLflow run's params, tags, metrics and artifacts, progress.csv)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers.cli import run_cli

SECRET = "hydrarl-test-key-0123456789"
COMET_BASE = ["env=Pendulum", "algorithm=sac", "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=1",
              "algorithm.learning_starts=100", "algorithm.batch_size=32", "trainer.progress_bar=false",
              "algorithm.train_freq=4"]  # a quarter of the gradient steps: nothing here depends on them
RECORDED_SEED = 3


def _network_is_cut() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"]).returncode == 0


NO_NETWORK = ["unshare", "-n"] if _network_is_cut() else []


def run_offline(args: list[str], cwd: Path, home: Path, **env) -> subprocess.CompletedProcess:
    """train.py with no network (when the kernel lets us cut it) and no Comet config file."""
    home.mkdir(exist_ok=True)
    return run_cli(args, cwd, env={"HOME": str(home), "COMET_API_KEY": "", **env}, wrap=NO_NETWORK)


class RecordedRun(NamedTuple):
    root: Path           # the command's working directory (the MLflow artifacts are in root/mlruns)
    tracking_uri: str    # sqlite store in root
    run_dir: Path        # hydra.run.dir


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory) -> RecordedRun:
    """The shared run (see the module docstring), made once per session: under xdist the first worker that asks makes
    it under a file lock, in the session's temporary folder above the workers' own, and the others wait and read it.
    Tests only read it (``mlflow_to_comet`` adds its tag to the MLflow run)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "recorded_run"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        outcome = root / "outcome.json"
        if not outcome.exists():
            root.mkdir(exist_ok=True)
            done = run_offline([*COMET_BASE, f"seed={RECORDED_SEED}", "trainer.n_epochs=2", "render=record", "trainer.video.every=1",
                                "logger=[mlflow,comet,csv]", "logger.comet.mode=offline", f"logger.mlflow.tracking_uri=sqlite:///{root}/mlflow.db",
                                f"hydra.run.dir={root / 'run'}"], root, root / "home", COMET_API_KEY=SECRET)
            outcome.write_text(json.dumps({"returncode": done.returncode, "output": done.stdout + done.stderr}))
    result = json.loads(outcome.read_text())
    assert result["returncode"] == 0, result["output"]
    return RecordedRun(root, f"sqlite:///{root}/mlflow.db", root / "run")
