"""benchmarks/cassie_curriculum.py: each stage composes to the settings its docs name; a SIGTERM to the script stops
the running stage after a checkpoint; real tiny stages run in order, each from the previous one's last checkpoint; a
rerun resumes a stopped stage and skips finished ones; a stage whose predecessor has no checkpoint is an error before
anything runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml

from benchmarks import cassie_curriculum as cc  # (the project root is on pytest's path, as for tests.helpers)
from hydrarl.config.compose import compose
from hydrarl.config.runs import MODEL

TINY = ["env.n_envs=1", "algorithm.n_steps=64", "algorithm.batch_size=32", "trainer.n_epochs=1",
        "trainer.eval_after_n_steps=64", "trainer.n_test_rollouts=1", "logger=[]"]


@pytest.mark.parametrize("stage", list(cc.STAGES))
def test_each_stage_composes_with_its_reward_commands_and_start(tmp_path, stage):
    cfg = compose(cc.stage_overrides(tmp_path, "mirror_ppo", stage))
    assert cfg.algorithm_name == "mirror_ppo" and cfg.env.n_envs == 4 and cfg.trainer.eval_after_n_steps == 50000
    after = cc.STAGES[stage].after
    assert cfg.restore_policy == (None if after is None else str(tmp_path / f"mirror_ppo_{after}/checkpoints/last/model.zip"))
    reward = cfg.env.kwargs.reward
    assert reward.weights.speed == (0 if stage == "stand" else 2.0)
    if stage != "stand":
        assert reward.speed_sigma == (0.25 if stage in ("wide", "cmd") else 0.05)
    wrappers = [w["_target_"].rsplit(".", 1)[-1] for w in cfg.env.get("wrappers") or []]
    assert ("CommandChanges" in wrappers) == (stage == "cmd")


def test_a_sigterm_stops_a_stage_after_a_checkpoint_and_a_rerun_resumes_it_then_runs_the_next(tmp_path, capsys,
                                                                                               menagerie):
    stand, track = tmp_path / "mirror_ppo_stand", tmp_path / "mirror_ppo_track"
    script = subprocess.Popen([sys.executable, cc.__file__, "--out", str(tmp_path),
                               "--stages", "stand", "track", "--set", *TINY, "trainer.n_epochs=1000"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not (stand / "checkpoints" / "last" / MODEL).exists() and script.poll() is None:
        assert time.monotonic() < deadline, "stage stand wrote no checkpoint in 180 s"
        time.sleep(0.5)
    script.send_signal(signal.SIGTERM)  # to the script alone: it passes the signal on to the stage's training
    out = script.communicate(timeout=180)[0]
    assert script.returncode == 130, out
    assert "stopped by signal 15" in out and "stage stand ended with exit status 130" in out
    assert not (stand / ".done").exists() and not track.exists()
    assert cc.next_command(tmp_path, "mirror_ppo", "stand") == [f"trainer.resume={stand}"]

    argv = ["--out", str(tmp_path), "--stages", "stand", "track", "--set", *TINY]
    assert cc.main(argv) == 0  # stand resumes (its epochs are done at n_epochs=1) and ends; track runs
    assert (stand / ".done").exists() and (track / ".done").exists()
    assert capsys.readouterr().out.splitlines()[0].endswith(f"train.py trainer.resume={stand} {' '.join(TINY)}")
    overrides = yaml.safe_load((track / ".hydra" / "overrides.yaml").read_text())
    assert f"restore_policy={stand}/checkpoints/last/model.zip" in overrides and "seed=16" in overrides
    assert cc.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [f"stage 1/2 stand: done ({stand}/.done)",
                                                    f"stage 2/2 track: done ({track}/.done)"]


def test_a_stage_without_its_predecessors_checkpoint_is_an_error(tmp_path, capsys):
    assert cc.main(["--out", str(tmp_path), "--stages", "walk"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stage walk starts from stage track's last checkpoint") and "--stages track walk" in err
    assert not (tmp_path / "mirror_ppo_walk").exists()
    assert cc.main(["--out", str(tmp_path), "--stages", "run"]) == 2
    assert "unknown; the stages are stand, track, walk, wide, cmd" in capsys.readouterr().err


def test_start_from_best_restores_the_previous_stages_best_checkpoint(tmp_path, capsys):
    assert cc.main(["--out", str(tmp_path), "--stages", "walk", "--start-from", "best", "--dry-run"]) == 0
    assert f"restore_policy={tmp_path}/mirror_ppo_track/checkpoints/best/model.zip" in capsys.readouterr().out
    (tmp_path / "mirror_ppo_track/checkpoints/last").mkdir(parents=True)
    (tmp_path / "mirror_ppo_track/checkpoints/last" / MODEL).touch()  # a last checkpoint does not stand in for best
    assert cc.main(["--out", str(tmp_path), "--stages", "walk", "--start-from", "best"]) == 2
    assert capsys.readouterr().err.startswith("error: stage walk starts from stage track's best checkpoint")
    assert not (tmp_path / "mirror_ppo_walk").exists()
    with pytest.raises(SystemExit) as exit_info:
        cc.main(["--out", str(tmp_path), "--start-from", "first"])
    assert exit_info.value.code == 2 and "invalid choice: 'first'" in capsys.readouterr().err
