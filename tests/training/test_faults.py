"""Nothing lost, nothing silent: a crash ends the tracker run FAILED with its one-line cause even when the
crash handler's own writes fail; a disk that fills during a checkpoint keeps the previous one, and once
space returns the run resumes from it to the end, in the same MLflow run; a resume whose last checkpoint
cannot be read continues from the newest intact one."""

import json
import logging
import shutil

import pytest
from mlflow.tracking import MlflowClient

from hydrarl.training.result import ERROR_FILE, RESULT_FILE
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg
from tests.helpers.disks import small_disk
from tests.training.test_resume import BASE, state_of


def _only_run(tracking_uri):
    client = MlflowClient(tracking_uri)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("Pendulum").experiment_id])
    return client, mlflow_run


def test_a_crash_whose_error_file_cannot_be_written_still_ends_the_run_failed_with_its_cause(tmp_path, tracking_uri, caplog):
    run_dir = tmp_path / "run"
    (run_dir / ERROR_FILE).mkdir(parents=True)  # error.txt cannot be written: the handler's first step fails
    cfg = compose_cfg([*BASE, "trainer.n_epochs=3", f"logger.mlflow.tracking_uri={tracking_uri}",
                       "+env.wrappers=[{_target_: tests.helpers.CrashAfter, steps: 250}]"])
    with caplog.at_level(logging.INFO, logger="hydrarl"), pytest.raises(RuntimeError, match="deliberate crash"):
        run(cfg, run_dir)
    cause = "RuntimeError: deliberate crash at step 250"
    client, failed = _only_run(tracking_uri)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["hydrarl.error"] == cause
    result = json.loads((run_dir / RESULT_FILE).read_text())  # the steps after the failed one were done
    assert (result["status"], result["epochs_run"], result["num_timesteps"]) == ("failed", 1, 200)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0] == f"run failed: {cause} (traceback in {run_dir / ERROR_FILE})"
    assert errors[1].startswith(f"after the failure, {ERROR_FILE} could not be recorded: IsADirectoryError")
    assert len(errors) == 2


def test_a_disk_full_during_a_checkpoint_keeps_the_previous_one_and_the_run_resumes_to_the_end(tmp_path, tracking_uri):
    args = [*BASE, "trainer.n_epochs=3", f"logger.mlflow.tracking_uri={tracking_uri}"]
    # Epoch 1 writes best + last (~2 models, ~540 kB); epoch 2 rewrites one of them beside the old: a third does not fit.
    with small_disk(tmp_path / "run", 650) as disk:
        with pytest.raises(OSError, match="No space left on device"):
            run(compose_cfg(args), disk.path)
        client, failed = _only_run(tracking_uri)
        assert failed.info.status == "FAILED"
        assert failed.data.tags["hydrarl.error"].startswith("OSError: [Errno 28] No space left on device")
        assert (state_of(disk.path)["epoch"], state_of(disk.path)["num_timesteps"]) == (1, 200)  # the previous checkpoint
        assert sorted(p.name for p in (disk.path / "checkpoints").iterdir()) == ["best", "last"]  # no partial .tmp left
        assert "No space left on device" in (disk.path / ERROR_FILE).read_text()
        assert json.loads((disk.path / RESULT_FILE).read_text())["status"] == "failed"

        disk.resize(4096)
        resumed = run(compose_cfg([*args, f"trainer.resume={disk.path}"]), disk.path)
        assert (resumed.status, resumed.epochs_run, resumed.num_timesteps) == ("completed", 3, 600)
        finished = client.get_run(failed.info.run_id)
        assert resumed.run_id == failed.info.run_id and finished.info.status == "FINISHED"
        assert "hydrarl.error" not in finished.data.tags  # the earlier failure's cause no longer holds
        assert [m.step for m in client.get_metric_history(resumed.run_id, "eval/mean_reward")] == [200, 400, 400, 600]


def test_a_resume_whose_last_checkpoint_is_unreadable_continues_from_the_newest_intact_one(tmp_path, caplog):
    args = [*BASE, "logger=[]", "trainer.checkpoint_every=1"]
    run(compose_cfg([*args, "trainer.n_epochs=2"]), tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.rmtree(checkpoints / "epoch_0002")  # the newest intact one is then epoch 1, a whole epoch back
    buffer = checkpoints / "last" / "replay_buffer.pkl"
    buffer.write_bytes(buffer.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="hydrarl"):
        resumed = run(compose_cfg([*args, "trainer.n_epochs=3", f"trainer.resume={tmp_path / 'run'}"]), tmp_path / "run")
    assert (resumed.status, resumed.epochs_run, resumed.num_timesteps) == ("completed", 3, 600)
    assert [h["time/total_timesteps"] for h in state_of(tmp_path / "run")["history"]] == [200, 400, 600]
    warning = caplog.records[0].getMessage()
    assert warning.startswith(f"{buffer} is unreadable (UnpicklingError: ")
    assert warning.endswith(f"resuming from the earlier checkpoint {checkpoints / 'epoch_0001'} instead (epoch 1, step 200)")
