"""``experiment/deploy.py`` on the real PenguinPi simulator with a real saved model (``algorithm=lane``, trained for one
short epoch here): episodes driven and recorded as a FINISHED MLflow run with a metric per episode and the odometry
plot; the newest PenguinPi run under ./runs by default; bad input ends with exit 2 before anything is recorded; Ctrl-C
mid-step ends with 130, a KILLED run and the wheels stopped; a simulator killed mid-drive is one error line, exit 1 and
a FAILED run."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from hydrarl.analysis.deploy import EXPERIMENT, main
from hydrarl.paths import PROJECT_ROOT
from tests.helpers.cli import SIGINT_IGNORED

DEPLOY = [sys.executable, str(PROJECT_ROOT / "experiment" / "deploy.py")]
LOOPBACK = requests.Session()
LOOPBACK.trust_env = False  # requests to the simulator never go through a proxy from the environment


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A saved PenguinPi model: the scripted lane driver, "trained" for one epoch of 20 steps by train.py."""
    root = tmp_path_factory.mktemp("train")
    run = root / "runs" / "PenguinPi" / "lane" / "a"
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "experiment" / "train.py"), "env=PenguinPi", "algorithm=lane",
                           "trainer.n_epochs=1", "trainer.eval_after_n_steps=20", "trainer.n_test_rollouts=1",
                           "env.max_episode_steps=20", "logger=[]", f"hydra.run.dir={run}"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run / "checkpoints" / "best" / "model.zip").is_file()
    return run


def _runs(store: Path) -> list:
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def _history(store: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(f"sqlite:///{store}").get_metric_history(run_id, key)]


def test_two_episodes_are_driven_and_recorded(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([str(run_dir), "episodes=2"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("episode ")]
    assert len(lines) == 2, out
    for n, line in enumerate(lines, 1):
        found = re.fullmatch(rf"episode {n}/2: 20 steps, ([\d.]+) m, 4\.0 s on the road \(time limit\), return [\d.]+", line)
        assert found and float(found.group(1)) > 0.1, line
    assert "2 episode(s), 40 steps" in out and "FINISHED in deploy-PenguinPi" in out

    [run] = _runs(tmp_path / "mlflow.db")
    assert run.info.status == "FINISHED"
    assert [step for step, _ in _history(tmp_path / "mlflow.db", run.info.run_id, "distance")] == [1, 2]
    assert _history(tmp_path / "mlflow.db", run.info.run_id, "time_on_road") == [(1, 4.0), (2, 4.0)]
    assert run.data.tags["hydrarl.robot"] == "simulator"
    assert run.data.tags["hydrarl.model"] == str(run_dir / "checkpoints" / "best" / "model.zip")
    artifacts = {a.path for a in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").list_artifacts(run.info.run_id)}
    assert artifacts == {"path.png", "poses.csv"}
    [folder] = (tmp_path / "runs" / "deploy").iterdir()
    assert (folder / "path.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (folder / "poses.csv").read_text().splitlines()
    assert rows[0] == "episode,step,x_m,y_m,theta_rad" and len(rows) == 1 + 2 * 21  # the reset's pose and 20 steps each
    assert rows[1].startswith("1,0,0.0,0.0,")  # odometry starts at the origin


def test_without_model_the_newest_penguinpi_run_of_the_folder_drives(run_dir, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs" / "PenguinPi" / "lane"
    for name in ("older", "newer", "cartpole"):
        shutil.copytree(run_dir, runs / name, ignore=shutil.ignore_patterns(".lock"))
    config = runs / "cartpole" / "config.yaml"  # the newest model of all, but of another env: not a candidate
    config.write_text(config.read_text().replace("hydrarl.envs.penguinpi:PenguinPi-v0", "CartPole-v1"))
    now = time.time()
    for age, name in ((300, "older"), (200, "newer"), (100, "cartpole")):
        os.utime(runs / name / "checkpoints" / "best" / "model.zip", (now - age, now - age))
    monkeypatch.chdir(tmp_path)
    assert main(["env.max_episode_steps=5"]) == 0
    out = capsys.readouterr().out
    assert "(runs/PenguinPi/lane/newer/checkpoints/best/model.zip, deterministic)" in out
    assert "episode 1/1: 5 steps" in out
    assert _runs(tmp_path / "mlflow.db")[0].data.tags["hydrarl.model"].endswith("newer/checkpoints/best/model.zip")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "no saved PenguinPi model under"),
    (["RUN", "episodes=-1"], "episodes=-1: give an integer >= 0"),
    (["RUN", "colour=red"], "colour is not a setting of deploy.py"),
    (["RUN", "stochastic=maybe"], "stochastic=maybe: give true or false"),
    (["RUN", "env.kwargs.colour=red"], "env.kwargs.colour is not a key of this run's env config"),
    (["RUN", "env.kwargs.robot_url=ftp://robot"], "env.kwargs.robot_url='ftp://robot' is not allowed"),
    (["RUN", "env.max_episode_steps=0"], "env.max_episode_steps=0 is not allowed"),
    (["RUN", "tracking_uri=bogus://store"], "tracking_uri=bogus://store cannot be opened"),
    (["CARTPOLE"], "deploy.py drives the PenguinPi"),
    (["LONE_ZIP"], "no run directory above this model"),
])
def test_bad_input_exits_2_with_one_line_and_records_nothing(run_dir, tmp_path, monkeypatch, capsys, argv, message):
    cartpole = tmp_path / "elsewhere" / "cartpole"
    shutil.copytree(run_dir, cartpole, ignore=shutil.ignore_patterns(".lock"))
    (cartpole / "config.yaml").write_text((cartpole / "config.yaml").read_text().replace(
        "hydrarl.envs.penguinpi:PenguinPi-v0", "CartPole-v1"))
    lone = tmp_path / "elsewhere" / "model.zip"
    shutil.copy(run_dir / "checkpoints" / "best" / "model.zip", lone)
    given = {"RUN": str(run_dir), "CARTPOLE": str(cartpole), "LONE_ZIP": str(lone)}
    monkeypatch.chdir(tmp_path)
    assert main([given.get(arg, arg) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [err.strip()] and err.startswith("error: ")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()


@contextmanager
def simulator(speedup: float) -> Iterator[tuple[str, subprocess.Popen]]:
    """A sim_server of our own on a loopback port the OS picks: (its URL, its process); it outlives the deploy."""
    process = subprocess.Popen([sys.executable, "-m", "hydrarl.envs.penguinpi.sim_server", "--port", "0", "--speedup",
                                str(speedup), "--parent", str(os.getpid())], stdout=subprocess.PIPE, text=True)
    try:
        announced = re.fullmatch(r"PenguinPi simulator on (http://\S+)", process.stdout.readline().strip())
        assert announced, "the simulator announced no URL"
        yield announced.group(1), process
    finally:
        process.kill()
        process.wait()


def _state(url: str) -> dict:
    return LOOPBACK.get(f"{url}/sim/state", timeout=5).json()


def _wait_until_driving(url: str, deploy: subprocess.Popen, timeout: float = 60) -> dict:
    """The simulator's state once its wheels turn (a step's timed move is under way)."""
    deadline = time.time() + timeout
    while True:
        assert deploy.poll() is None, deploy.communicate()
        assert time.time() < deadline, "the robot never drove"
        state = _state(url)
        if state["command"] != [0, 0]:
            return state
        time.sleep(0.02)


def _deploy(run_dir: Path, url: str, cwd: Path) -> subprocess.Popen:
    """deploy.py until Ctrl-C against the simulator at ``url``, started with SIGINT ignored (as a script's background
    job starts it): deploy's own handler must still stop it."""
    return subprocess.Popen([*SIGINT_IGNORED, *DEPLOY, str(run_dir), "episodes=0", f"env.kwargs.robot_url={url}",
                             "env.max_episode_steps=1000"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_mid_step_stops_the_wheels_and_records_the_drive_as_killed(run_dir, tmp_path):
    with simulator(speedup=1) as (url, _):  # real time: a step's move lasts 0.2 s
        deploy = _deploy(run_dir, url, tmp_path)
        _wait_until_driving(url, deploy)
        time.sleep(1.0)  # some steps done (about 5 at 0.2 s each)
        before = _wait_until_driving(url, deploy)  # then Ctrl-C while the wheels turn
        deploy.send_signal(signal.SIGINT)
        out, err = deploy.communicate(timeout=60)
        assert deploy.returncode == 130, out + err
        after = _state(url)
        assert after["command"] == [0, 0] and after["stops"] > before["stops"]  # /robot/stop came after the Ctrl-C
    assert re.search(r"episode 1: \d+ steps, [\d.]+ m, [\d.]+ s on the road \(stopped by Ctrl-C\)", out), out
    [run] = _runs(tmp_path / "mlflow.db")
    assert run.info.status == "KILLED" and run.data.tags["hydrarl.robot"] == url
    [(step, distance)] = _history(tmp_path / "mlflow.db", run.info.run_id, "distance")
    assert step == 1 and distance > 0


def test_a_simulator_killed_mid_drive_is_one_error_line_exit_1_and_a_failed_run(run_dir, tmp_path):
    with simulator(speedup=1) as (url, sim):
        deploy = _deploy(run_dir, url, tmp_path)
        _wait_until_driving(url, deploy)
        sim.kill()
        out, err = deploy.communicate(timeout=60)
    assert deploy.returncode == 1, out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"PenguinPi at {url} unreachable" in errors[0] and "Traceback" not in err, err
    assert "FAILED in deploy-PenguinPi" in out
    [run] = _runs(tmp_path / "mlflow.db")
    assert run.info.status == "FAILED" and "unreachable" in run.data.tags["hydrarl.error"]
