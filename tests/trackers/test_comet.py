"""The Comet tracker: offline archives with params, metrics, videos and models, no network, no key in
them; online only with a key; parallel workers; resume continues the same experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hydrarl.analysis import mlflow_to_comet
from hydrarl.errors import UserError
from hydrarl.paths import PROJECT_ROOT
from hydrarl.trackers import comet_tracker
from hydrarl.trackers.base import RunRecord
from hydrarl.trackers.comet_tracker import CometTracker
from tests.helpers.recorded_run import COMET_BASE as BASE
from tests.helpers.recorded_run import NO_NETWORK, RECORDED_SEED, SECRET, run_offline


def messages(archive: Path) -> list[dict]:
    with zipfile.ZipFile(archive) as z:
        return [json.loads(line) for line in z.read("messages.json").decode().splitlines()]


def params_of(archive: Path) -> dict:
    """Logged parameters (Comet stores list values under "params", scalars under "param")."""
    found = [m["payload"].get("param") or m["payload"]["params"] for m in messages(archive) if m["type"] == "parameter_msg"]
    return {p["paramName"]: p["paramValue"] for p in found}


def uploads(archive: Path, kind: str) -> list[dict]:
    return [m["payload"] for m in messages(archive) if m["type"] == "file_upload" and m["payload"]["upload_type"] == kind]


def test_offline_archive_holds_params_metrics_videos_and_models_but_not_the_key(recorded_run):
    _, tracking_uri, run_dir = recorded_run
    (archive,) = (run_dir / "comet").glob("*.zip")
    msgs, params = messages(archive), params_of(archive)
    assert params["algorithm.learning_starts"] == 100 and params["seed"] == RECORDED_SEED and params["env_name"] == "Pendulum"
    rewards = [(m["payload"]["metric"]["step"], m["payload"]["metric"]["metricValue"]) for m in msgs
               if m["type"] == "metric_msg" and m["payload"]["metric"]["metricName"] == "eval/mean_reward"]
    assert [step for step, _ in rewards] == [200, 400]
    videos = uploads(archive, "video")
    assert [(v["additional_params"]["fileName"], v["additional_params"]["step"]) for v in videos] == [("epoch_0001", 200), ("epoch_0002", 400)]
    with zipfile.ZipFile(archive) as z:
        video_bytes = z.read(videos[0]["file_path"])
        assert video_bytes[4:8] == b"ftyp"  # an MP4 container
        assert all(SECRET.encode() not in z.read(name) for name in z.namelist())
    models = {(u["additional_params"]["groupingName"], u["additional_params"]["fileName"]) for u in uploads(archive, "model-element")}
    assert {("best_model", "model.zip"), ("final_model", "model.zip")} <= models
    # The same videos are MLflow artifacts of the run.
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "videos")) == ["videos/epoch_0001.mp4", "videos/epoch_0002.mp4"]


def copy_to_comet(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*NO_NETWORK, sys.executable, str(PROJECT_ROOT / "experiment" / "mlflow_to_comet.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(cwd), "COMET_API_KEY": ""})


def copy_to_comet_in_process(args: list[str], home: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """The same command's ``main`` in this process (for the calls that open no Comet experiment): exit status, stdout, stderr."""
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("COMET_API_KEY", "")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # (main sets it when unset)
    capsys.readouterr()
    code = mlflow_to_comet.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_mlflow_to_comet_copies_a_recorded_run_offline(recorded_run, tmp_path, monkeypatch, capsys):
    _, tracking_uri, _ = recorded_run
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    out = tmp_path / "archives"
    done = copy_to_comet(["--tracking-uri", tracking_uri, "--env", "Pendulum", "--offline", str(out)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 run(s) copied" in done.stdout
    (archive,) = out.glob("*.zip")
    assert client.get_run(run.info.run_id).data.tags["comet.experiment_key"] == archive.stem
    params = params_of(archive)
    assert {k: str(v) for k, v in params.items() if k in run.data.params} == run.data.params
    logged = [(m["payload"]["metric"]["step"], m["payload"]["metric"]["metricValue"]) for m in messages(archive)
              if m["type"] == "metric_msg" and m["payload"]["metric"]["metricName"] == "eval/mean_reward"]
    assert logged == [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/mean_reward")]
    assert [(v["additional_params"]["fileName"], v["additional_params"]["step"]) for v in uploads(archive, "video")] == [
        ("epoch_0001", 200), ("epoch_0002", 400)]
    models = {(u["additional_params"]["groupingName"], u["additional_params"]["fileName"]) for u in uploads(archive, "model-element")}
    assert {("best_model", "model.zip"), ("final_model", "model.zip")} <= models
    # A second copy skips the run; --force copies it again (a Comet experiment: in a process with no network);
    # uploading needs a key. The calls that open no Comet experiment run in this process.
    code, stdout, _ = copy_to_comet_in_process(["--tracking-uri", tracking_uri, "--offline", str(out)], tmp_path, monkeypatch, capsys)
    assert code == 0 and "skip" in stdout and len(list(out.glob("*.zip"))) == 1
    forced = copy_to_comet(["--tracking-uri", tracking_uri, "--offline", str(out), "--force"], tmp_path)
    assert forced.returncode == 0 and len(list(out.glob("*.zip"))) == 2
    code, _, stderr = copy_to_comet_in_process(["--tracking-uri", tracking_uri], tmp_path, monkeypatch, capsys)
    assert code == 2 and "no Comet API key" in stderr
    code, _, stderr = copy_to_comet_in_process(["--tracking-uri", tracking_uri, "--env", "NoSuchEnv", "--offline", str(out)], tmp_path,
                                               monkeypatch, capsys)
    assert code == 2 and "NoSuchEnv" in stderr


def test_auto_mode_is_online_only_with_a_configured_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    assert CometTracker(tmp_path, mode="auto").online is False
    with pytest.raises(UserError, match="no Comet API key is configured"):
        CometTracker(tmp_path, mode="online")
    monkeypatch.setenv("COMET_API_KEY", SECRET)
    assert CometTracker(tmp_path, mode="auto").online is True
    assert CometTracker(tmp_path, mode="offline").online is False
    with pytest.raises(UserError, match="auto, online, offline"):
        CometTracker(tmp_path, mode="cloud")


def test_online_without_a_key_fails_before_anything_is_recorded(tmp_path, tracking_uri):
    """Bad input: exit 2, no run directory contents, no MLflow run."""
    run_dir = tmp_path / "run"
    done = run_offline([*BASE, "logger=[mlflow,comet]", "logger.comet.mode=online", f"logger.mlflow.tracking_uri={tracking_uri}",
                        f"hydra.run.dir={run_dir}"], tmp_path, tmp_path / "home")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no Comet API key is configured" in done.stderr
    assert not (run_dir / "config.yaml").exists()
    client = MlflowClient(tracking_uri)
    assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())


def test_two_parallel_workers_each_write_their_own_archive(tmp_path, tracking_uri):
    sweep_dir = tmp_path / "sweep"
    done = run_offline(["--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *BASE, "seed=1,2", "trainer.n_epochs=1",
                        "logger=[mlflow,comet]", f"logger.mlflow.tracking_uri={tracking_uri}", f"hydra.sweep.dir={sweep_dir}"],
                       tmp_path, tmp_path / "home")
    assert done.returncode == 0, done.stdout + done.stderr
    archives = sorted(sweep_dir.glob("*/comet/*.zip"))
    assert [a.parent.parent.name for a in archives] == ["0_Pendulum_sac", "1_Pendulum_sac"]
    seeds = [params_of(a)["seed"] for a in archives]
    assert seeds == [1, 2]
    assert len({a.stem for a in archives}) == 2  # two experiments, not one shared


def test_resume_continues_the_same_comet_experiment(tmp_path):
    run_dir = tmp_path / "run"
    common = [*BASE, "seed=4", "logger=[comet]", f"hydra.run.dir={run_dir}"]
    first = run_offline([*common, "trainer.n_epochs=1"], tmp_path, tmp_path / "home")
    assert first.returncode == 0, first.stderr
    (archive,) = (run_dir / "comet").glob("*.zip")
    resumed = run_offline([f"trainer.resume={run_dir}", "trainer.n_epochs=2"], tmp_path, tmp_path / "home")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    archives = sorted((run_dir / "comet").glob("*.zip"), key=lambda p: p.stat().st_mtime)
    assert len(archives) == 2 and archives[0] == archive
    with zipfile.ZipFile(archives[1]) as z:
        continued = json.loads(z.read("experiment.json"))
    assert archive.stem in json.dumps(continued)  # the second archive continues the first experiment
    steps = [m["payload"]["metric"]["step"] for m in messages(archives[1])
             if m["type"] == "metric_msg" and m["payload"]["metric"]["metricName"] == "eval/mean_reward"]
    assert steps == [400]


@pytest.mark.skipif(not NO_NETWORK, reason="needs `unshare -n` to cut the network (an online run must not reach Comet)")
def test_online_run_without_a_network_falls_back_to_an_offline_archive(tmp_path):
    """A key, mode=online and no network: the run succeeds at once, its Comet data goes to an offline archive in the
    run dir, one warning names the archive and the upload command; resuming it offline continues the experiment."""
    run_dir = tmp_path / "run"
    common = [*BASE, "seed=5", "logger=[comet]", "logger.comet.mode=online", f"hydra.run.dir={run_dir}"]
    started = time.monotonic()
    done = run_offline([*common, "trainer.n_epochs=1"], tmp_path, tmp_path / "home", COMET_API_KEY=SECRET)
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (archive,) = (run_dir / "comet").glob("*.zip")
    warnings = [line for line in output.splitlines() if "[WARNING]" in line and "comet_tracker" in line]
    assert warnings == [f"{warnings[0].split(' - ')[0]} - comet: Comet was unreachable when the run started; its Comet data "
                        f"is in {archive} (upload it with: comet upload {archive})"]
    assert "will not be logged" not in output  # comet_ml's own message, untrue here
    print(f"online run without a network: {seconds:.1f} s")
    assert params_of(archive)["seed"] == 5
    steps = [m["payload"]["metric"]["step"] for m in messages(archive)
             if m["type"] == "metric_msg" and m["payload"]["metric"]["metricName"] == "eval/mean_reward"]
    assert steps == [200]
    with zipfile.ZipFile(archive) as z:
        assert all(SECRET.encode() not in z.read(name) for name in z.namelist())
    # Resuming (still online, still no network) continues the same experiment in a second archive.
    resumed = run_offline([f"trainer.resume={run_dir}", "trainer.n_epochs=2"], tmp_path, tmp_path / "home", COMET_API_KEY=SECRET)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (second,) = set((run_dir / "comet").glob("*.zip")) - {archive}
    assert f"comet upload {second}" in resumed.stderr + resumed.stdout
    assert archive.stem in json.loads(zipfile.ZipFile(second).read("experiment.json")).values()


def test_connection_retries_are_short_only_while_an_experiment_starts(monkeypatch, tmp_path):
    """comet_ml's ~30 s of retries before it reports no connection become one quick retry, during the start only; a
    setting the user made is kept."""
    from comet_ml.config import get_config

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("COMET_HTTP_SESSION_RETRY_TOTAL", raising=False)
    monkeypatch.setenv("COMET_GET_OR_ADD_EXPERIMENT_RETRY_CONNECT", "2")
    with comet_tracker._quick_handshake():
        config = get_config()
        assert config.get_int(None, "comet.http_session.retry_total") == 1
        assert config.get_int(None, "comet.get_or_add_experiment.retry_connect") == 2
    assert get_config().get_int(None, "comet.http_session.retry_total") == 3  # comet_ml's default again
    assert os.environ["COMET_GET_OR_ADD_EXPERIMENT_RETRY_CONNECT"] == "2"


class _ConnectionLostExperiment:
    """Stands in for comet_ml's online Experiment whose connection drops after a good start: its fallback streamer
    writes an archive into the offline directory and hands it to the offline-ZIP callback when the experiment ends."""

    def __init__(self, offline_directory: str, **_):
        self.alive, self.offline_directory, self.uploader = True, Path(offline_directory), None

    def set_offline_zip_uploader(self, callback):
        self.uploader = callback

    def end(self):
        self.offline_directory.mkdir(parents=True, exist_ok=True)
        archive = self.offline_directory / "0123456789abcdef0123456789abcdef-AbCdEf.zip"
        archive.write_bytes(b"")
        self.uploader(str(archive))
        return True

    def get_key(self):
        return "0123456789abcdef0123456789abcdef"

    def __getattr__(self, name):  # set_name, log_metrics, ...
        return lambda *args, **kwargs: None


def test_a_connection_lost_during_the_run_names_the_fallback_archive(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COMET_API_KEY", SECRET)
    monkeypatch.setattr(comet_tracker.comet_ml, "Experiment", _ConnectionLostExperiment)
    tracker = CometTracker(tmp_path, mode="online")
    tracker.start(RunRecord(run_dir=tmp_path, run_name="run", params={}, tags={"env": "Pendulum"}))
    tracker.log_metrics({"eval/mean_reward": 1.0}, step=200)
    with caplog.at_level("WARNING", logger=comet_tracker.__name__):
        tracker.finish("completed")
    archive = tmp_path / "comet" / "0123456789abcdef0123456789abcdef-AbCdEf.zip"
    assert tracker.fallback == "during_run" and tracker.archive == archive
    assert [r.getMessage() for r in caplog.records] == [
        f"comet: the connection to Comet was lost during the run; all its Comet data is in {archive} (upload it with: "
        f"comet upload --force-reupload {archive})"]
