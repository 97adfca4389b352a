"""SIGKILL: a run killed at any point, by a real signal, loses nothing that a resume cannot give back.

Killed before its first checkpoint, its MLflow run is closed KILLED by ``experiment/runs.py close-stale``
(never a live one); killed after, a resume continues the same MLflow run to FINISHED, with the env-step and
gradient-step counts of an unkilled run, wherever the kills landed."""

import random
import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient
from stable_baselines3 import SAC

from hydrarl.errors import UserError
from hydrarl.paths import PROJECT_ROOT
from hydrarl.paths import TRAIN_SCRIPT as TRAIN
from hydrarl.trackers.mlflow_tracker import CLOSED_TAG, prepare_store
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg
from tests.training.test_resume import BASE, state_of
from tests.training.warm_cli import WarmCli

ARGS = [*BASE, "trainer.eval_after_n_steps=100", "trainer.n_test_rollouts=1"]
EPOCHS = 8
EPOCH_LINE = re.compile(rf"epoch (\d+)/{EPOCHS} ")


@pytest.fixture(scope="module")
def warm():
    server = WarmCli()
    yield server
    server.close()


def _epochs_logged(out: str) -> list[int]:
    return [int(m[1]) for m in EPOCH_LINE.finditer(out)]


def test_sigkill_at_random_points_then_resume_reaches_the_counts_of_an_unkilled_run(tmp_path, tracking_uri, warm):
    reference = run(compose_cfg([*ARGS, f"trainer.n_epochs={EPOCHS}", "logger=[]"]), tmp_path / "reference")
    rng = random.Random(20261201)
    # after epoch k's line, + s: at least two epochs (>= 1 s, more under load) are left when the kill lands
    points = [(k, rng.uniform(0, 1.0)) for k in sorted(rng.sample(range(1, EPOCHS - 2), 3))]
    run_dir = tmp_path / "run"
    argv = [*ARGS, f"trainer.n_epochs={EPOCHS}", f"logger.mlflow.tracking_uri={tracking_uri}", f"hydra.run.dir={run_dir}"]
    for i, (epoch, delay) in enumerate(points):
        segment = warm.start(argv if i == 0 else [f"trainer.resume={run_dir}"], tmp_path / f"segment_{i}.log")
        segment.wait_for(lambda out, k=epoch: any(e >= k for e in _epochs_logged(out)))
        time.sleep(delay)
        segment.kill(signal.SIGKILL)
        assert segment.wait() == -signal.SIGKILL, segment.output()
    last = warm.start([f"trainer.resume={run_dir}"], tmp_path / "last.log")
    assert last.wait() == 0, last.output()

    state = state_of(run_dir)
    assert (state["epoch"], state["num_timesteps"]) == (reference.epochs_run, reference.num_timesteps) == (EPOCHS, 100 * EPOCHS)
    killed_model = SAC.load(run_dir / "checkpoints" / "last" / "model.zip")
    full_model = SAC.load(tmp_path / "reference" / "checkpoints" / "last" / "model.zip")
    assert killed_model.num_timesteps == full_model.num_timesteps
    assert killed_model._n_updates == full_model._n_updates  # gradient steps: none lost, none repeated
    client = MlflowClient(tracking_uri)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    assert mlflow_run.info.status == "FINISHED" and CLOSED_TAG not in mlflow_run.data.tags
    steps = [m.step for m in client.get_metric_history(mlflow_run.info.run_id, "eval/mean_reward")]
    assert set(steps) == {100 * k for k in range(1, EPOCHS + 1)}  # an epoch logged, then killed before its checkpoint, logs again


def test_a_run_killed_before_its_first_checkpoint_is_closed_by_the_command_and_a_live_one_is_not(tmp_path, tracking_uri):
    slow = [*BASE, "trainer.eval_after_n_steps=1000000", "trainer.n_epochs=1", f"logger.mlflow.tracking_uri={tracking_uri}"]
    prepare_store(tracking_uri)  # this test's client would otherwise race the two runs to create the schema
    procs = {name: subprocess.Popen([sys.executable, str(TRAIN), *slow, f"hydra.run.dir={tmp_path / name}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name in ("live", "doomed")}
    try:
        client, runs = MlflowClient(tracking_uri), {}
        deadline = time.monotonic() + 240
        while len(runs) < 2 and time.monotonic() < deadline:  # both have opened their MLflow run
            time.sleep(0.5)
            experiment = client.get_experiment_by_name("Pendulum")
            if experiment is not None:
                runs = {r.data.tags["run_dir"]: r for r in client.search_runs([experiment.experiment_id])}
        live, doomed = runs[str(tmp_path / "live")], runs[str(tmp_path / "doomed")]
        procs["doomed"].send_signal(signal.SIGKILL)
        assert procs["doomed"].wait(timeout=60) == -signal.SIGKILL
        assert not (tmp_path / "doomed" / "checkpoints").exists()
        assert client.get_run(doomed.info.run_id).info.status == "RUNNING"  # what SIGKILL leaves

        pid = procs["live"].pid
        with pytest.raises(UserError, match=rf"the run directory {tmp_path / 'live'} is in use by a live process \(pid {pid} on "):
            run(compose_cfg(slow), tmp_path / "live")  # a second run in a live run's directory is refused
        out = subprocess.run([sys.executable, str(PROJECT_ROOT / "experiment" / "runs.py"), "close-stale", "--tracking-uri", tracking_uri],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[1:] == [
            f"closed {doomed.info.run_id} ({doomed.info.run_name}) as KILLED: no live process holds {tmp_path / 'doomed'}",
            "1 stale run(s) closed as KILLED"]
        assert client.get_run(doomed.info.run_id).info.status == "KILLED"
        assert client.get_run(live.info.run_id).info.status == "RUNNING"
        assert procs["live"].poll() is None
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=60)
