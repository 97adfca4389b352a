"""Where runs write: every process gets a run (or sweep) directory of its own whatever the timing, and a
folder that cannot be written is refused before anything happens."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from hydrarl.config.resolvers import fresh_dir
from hydrarl.paths import TRAIN_SCRIPT, claim_new_dir
from tests.helpers.compose import compose_cfg
from tests.helpers.disks import readonly_dir

TINY = ["env=CartPole", "algorithm=a2c", "seed=1", "logger=[]", "trainer.n_epochs=1", "trainer.eval_after_n_steps=100",
        "trainer.n_test_rollouts=1", "trainer.progress_bar=false"]


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_default_run_and_sweep_dirs_are_claimed_per_process():
    compose_cfg([])
    raw = OmegaConf.to_container(HydraConfig.get(), resolve=False)
    assert raw["run"]["dir"].startswith("${fresh_dir:${project_root:}/runs/")
    assert raw["sweep"]["dir"].startswith("${fresh_dir:${project_root:}/runs/multirun")


def _claim(parent: str, start: float, queue) -> None:
    time.sleep(max(0.0, start - time.time()))
    queue.put((fresh_dir(parent), fresh_dir(parent)))


def test_fresh_dir_gives_each_process_its_own_folder_and_one_process_the_same(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue, start = ctx.Queue(), time.time() + 0.5
    procs = [ctx.Process(target=_claim, args=(str(tmp_path / "runs"), start, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    answers = [queue.get(timeout=30) for _ in procs]
    for p in procs:
        p.join()
    assert all(first == again for first, again in answers)  # Hydra resolves it more than once per process
    dirs = {first for first, _ in answers}
    assert len(dirs) == 6 and all(Path(d).is_dir() and Path(d).parent == tmp_path / "runs" for d in dirs)
    assert {p.name for p in (tmp_path / "runs").iterdir()} == {Path(d).name for d in dirs}


def test_claim_new_dir_takes_the_next_suffix_when_the_stamp_is_taken(tmp_path):
    first = claim_new_dir(tmp_path, "x_")
    second = claim_new_dir(tmp_path, "x_")
    if second.name.startswith(first.name):  # same second (the usual case): the stamp is taken, so a suffix
        assert second.name == f"{first.name}_1"
    else:  # the clock moved on to the next second between the two calls
        assert second.name > first.name and not second.name.endswith("_1")
    assert first != second and first.is_dir() and second.is_dir()


def test_four_runs_started_at_once_get_four_run_directories(tmp_path):
    procs = [_start([*TINY, f"hydra.run.dir=${{fresh_dir:{tmp_path / 'runs'}}}"], tmp_path) for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e for _, e in outputs]
    dirs = [Path(re.search(r"done: .* \| (\S+)$", out + err, re.M).group(1)) for out, err in outputs]
    assert len(set(dirs)) == 4
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(d.name for d in dirs)
    for d in dirs:
        assert OmegaConf.load(d / "config.yaml").seed == 1
        assert (d / "checkpoints" / "last" / "model.zip").is_file() and (d / "trial_result.json").is_file()


def test_two_multiruns_started_at_once_get_two_sweep_directories(tmp_path):
    procs = [_start(["--multirun", *TINY, f"hydra.sweep.dir=${{fresh_dir:{tmp_path / 'multirun'}}}"], tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outputs]
    sweeps = sorted((tmp_path / "multirun").iterdir())
    assert len(sweeps) == 2
    for sweep in sweeps:
        assert (sweep / "0_CartPole_a2c" / "config.yaml").is_file()


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_a_read_only_output_folder_is_refused_before_anything_runs(tmp_path, multirun):
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    with readonly_dir(tmp_path / "ro") as ro:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, str(TRAIN_SCRIPT), *(["--multirun"] if multirun else []), *TINY,
                               f"{key}={ro / 'run'}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        seconds = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {key}={ro / 'run'} cannot be written (Read-only file system); "
                     "choose a folder you can write to, with free space."] or (os.geteuid() != 0 and "Permission denied" in lines[-1])
    assert "Traceback" not in proc.stderr and "epoch" not in proc.stderr
    assert seconds < 30


def test_an_empty_run_dir_is_refused_not_the_current_folder(tmp_path):
    proc = subprocess.run([sys.executable, str(TRAIN_SCRIPT), *TINY, "hydra.run.dir="], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr.strip()) == (2, "error: hydra.run.dir is empty: give a folder for the run, or leave "
                                                         "hydra.run.dir out for a new one under runs/.")
    assert list(tmp_path.iterdir()) == []


def test_writable_dir_without_create_probes_and_makes_nothing(tmp_path):
    from hydrarl.errors import UserError, writable_dir

    target = tmp_path / "a" / "b"
    assert writable_dir(target, "hydra.sweep.dir", create=False) == target
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its parents, nor the probe file
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match=r"hydra.sweep.dir=.*file.txt/x cannot be written \(Not a directory\)"):
        writable_dir(tmp_path / "file.txt" / "x", "hydra.sweep.dir", create=False)
    with readonly_dir(tmp_path / "ro") as ro, pytest.raises(UserError, match="cannot be written"):
        writable_dir(ro / "sweep", "hydra.sweep.dir", create=False)


def test_release_claims_removes_unused_claimed_folders_and_the_parents_made_for_them(tmp_path):
    from hydrarl.config.resolvers import release_claims

    kept = Path(fresh_dir(str(tmp_path / "runs" / "Pendulum" / "sac")))
    unused = Path(fresh_dir(str(tmp_path / "runs" / "multirun")))
    other = tmp_path / "runs" / "other"
    other.mkdir()
    release_claims(keep=kept)
    assert kept.is_dir() and not unused.exists() and not (tmp_path / "runs" / "multirun").exists() and other.is_dir()
    assert fresh_dir(str(tmp_path / "runs" / "multirun")) == str(unused)  # the name stays this process's, unmade
    assert not unused.exists()
    (kept / "train.log").write_text("something")
    release_claims()
    assert kept.is_dir()  # a folder with anything in it is never removed
    (kept / "train.log").unlink()
    release_claims()  # released already: nothing more to undo
    assert kept.is_dir()
