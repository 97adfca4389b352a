"""The bad-input campaign: every entry point, given input a new user might type, ends with exit status 2,
exactly one line on stderr (``error: ...`` naming what was wrong), no traceback, no process left behind,
and nothing recorded (no run or output directory, no MLflow run, no study, a resumed run untouched).

The table is ``tests/faults/cases.py`` (``CASES``: case id, command, arguments, words the message must
contain, placeholders and the defaults each command gets). Each case is the real script run as its own
process, forked from a helper that has the imports done (``tests/faults/forkrun.py``), so the ~200
processes cost seconds, not minutes. Every case runs with ``MLFLOW_TRACKING_URI`` set to a copy of a store.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import sqlite3
from contextlib import ExitStack
from pathlib import Path

import pytest

from hydrarl.config import override_key
from tests.faults.cases import CASES, Case
from tests.faults.forkrun import PROJECT_ROOT, ForkRunner
from tests.helpers.disks import IS_ROOT, readonly_dir
from tests.helpers.menagerie import MENAGERIE

TINY_TRAINER = {"trainer.n_epochs": "1", "trainer.eval_after_n_steps": "100", "trainer.n_test_rollouts": "1",
                "trainer.progress_bar": "false", "seed": "0"}
TINY_SEARCH = {"hydra.sweeper.n_trials": "2", "hydra.sweeper.n_jobs": "1"}
OUT_OPTION = {"evaluate": "--out", "plot": "--out", "plot_gait": "--out", "run_testing": "-o"}


PLACEHOLDER = re.compile(r"\{(tmp|run|sweep|out|ro|file|notrun|trained|corrupt|store|busy_port)\}")


def full_args(c: Case) -> list[str]:
    """The case's arguments with the defaults of its command (see the module docstring)."""
    args = list(c.args)
    if c.command == "train":
        given = {override_key(a) for a in args if not a.startswith("-")}
        extra = {"hydra.run.dir": "{run}", "hydra.sweep.dir": "{sweep}", **TINY_TRAINER}
        if "+search" not in given and "trainer.resume" not in given:
            extra = {"env": "Pendulum", "algorithm": "sac", **extra}
        if "+search" in given:
            extra.update(TINY_SEARCH)
        if "trainer.resume" in given:  # a resumed run's directory is its own
            extra = {k: v for k, v in extra.items() if k != "hydra.run.dir"}
        args += [f"{k}={v}" for k, v in extra.items() if k not in given]
    elif c.command in OUT_OPTION and OUT_OPTION[c.command] not in args:
        args += [OUT_OPTION[c.command], "{out}"]
    return args


# -- fixtures ------------------------------------------------------------------------------------------

def case_env(store_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMET_API", "HYDRARL_", "MLFLOW_TRACKING", "PYTEST_", "CUDA_VISIBLE"))}
    env.update(MLFLOW_TRACKING_URI=store_uri, CUDA_VISIBLE_DEVICES="", COMET_AUTO_LOG_ENV_DETAILS="false",
               COMET_ERROR_TRACKING_ENABLE="false", MLFLOW_DISABLE_TELEMETRY="true", SDL_VIDEODRIVER="dummy")
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("MENAGERIE_ROOT", MENAGERIE)
    return env


@pytest.fixture(scope="module")
def runner():
    r = ForkRunner()
    yield r
    r.close()


SETUP_TRAIN = ["env=Pendulum", "algorithm=sac", "seed=1", "trainer.n_epochs=2", "trainer.eval_after_n_steps=100",
               "trainer.n_test_rollouts=1", "trainer.progress_bar=false", "logger=[mlflow]", "algorithm.learning_starts=50",
               "algorithm.batch_size=32", "algorithm.buffer_size=2000", "algorithm.policy_kwargs.net_arch=[16]"]


@pytest.fixture(scope="module")
def trained(runner, tmp_path_factory) -> Path:
    """A real trained Pendulum/sac run (``run/``) and the MLflow store holding it (``mlflow.db``), made once
    for all test processes (the first to get the lock trains; the others wait and reuse it)."""
    shared = tmp_path_factory.getbasetemp().parent / "faults-trained"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "ready").exists():
            shutil.rmtree(shared / "run", ignore_errors=True)
            env = case_env(f"sqlite:///{shared}/mlflow.db")
            reply = runner.run("train", [*SETUP_TRAIN, f"hydra.run.dir={shared / 'run'}"], shared, env, timeout=300)
            assert reply["status"] == 0, reply["stderr"][-3000:]
            (shared / "ready").write_text("")
    return shared


def _runs_in(db: Path) -> int:
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:  # not an MLflow store (e.g. an Optuna storage)
            return 0


def _studies_in(db: Path) -> int:
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from studies").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _entries(base: Path) -> set[str]:
    """Entries up to three levels under ``base``."""
    return {str(p.relative_to(base)) for depth in ("*", "*/*", "*/*/*") for p in base.glob(depth)} if base.exists() else set()


# -- the test ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_error_line_and_records_nothing(c: Case, runner: ForkRunner, trained: Path, tmp_path: Path):
    tmp = tmp_path
    (tmp / "file.txt").write_text("not a run, not a model\n")
    (tmp / "notrun").mkdir()
    shutil.copytree(trained / "run", tmp / "trained")
    shutil.copy(trained / "mlflow.db", tmp / "mlflow.db")
    store = f"sqlite:///{tmp}/mlflow.db"
    with ExitStack() as stack:
        busy = stack.enter_context(socket.socket())
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        places = {"tmp": str(tmp), "run": str(tmp / "run"), "sweep": str(tmp / "sweep"), "out": str(tmp / "out"),
                  "ro": str(tmp / "ro"), "file": str(tmp / "file.txt"), "notrun": str(tmp / "notrun"),
                  "trained": str(tmp / "trained"), "store": store, "busy_port": str(busy.getsockname()[1])}
        places["corrupt"] = str(tmp / "corrupt")
        if any("{corrupt}" in a for a in full_args(c)):  # the trained run with its only resumable model truncated
            shutil.copytree(trained / "run", tmp / "corrupt")
            model = tmp / "corrupt" / "checkpoints" / "last" / "model.zip"
            model.write_bytes(model.read_bytes()[:1000])
        args = [PLACEHOLDER.sub(lambda m: places[m.group(1)], a) for a in full_args(c)]
        if any("{ro}" in a for a in full_args(c)):
            stack.enter_context(readonly_dir(tmp / "ro"))
        trained_before = _listing(tmp / "trained")
        runs_before, project_before = _runs_in(tmp / "mlflow.db"), _entries(PROJECT_ROOT / "runs")
        private_runs = None
        if IS_ROOT:  # what the case writes into <project>/runs lands in a folder of its own
            private_runs = tmp / "project_runs"
            private_runs.mkdir()
        reply = runner.run(c.command, args, tmp, case_env(store), timeout=c.timeout, private_runs=private_runs)
    shown = f"{c.command} {' '.join(args)}\n--- exit {reply['status']} after {reply['seconds']} s\n--- stderr:\n{reply['stderr'][-4000:]}" \
            f"\n--- stdout:\n{reply['stdout'][-2000:]}"
    assert not reply["timed_out"], f"hang: still running after {c.timeout:g} s\n{shown}"
    assert not reply["leftovers"], f"processes left running: {reply['leftovers']}\n{shown}"
    assert "Traceback" not in reply["stderr"] + reply["stdout"], f"traceback\n{shown}"
    assert reply["status"] == 2, f"exit status {reply['status']}, not 2\n{shown}"
    lines = [line for line in reply["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr is not exactly one 'error: ' line\n{shown}"
    for needle in c.needles:
        assert needle in lines[0], f"the message does not name {needle!r}\n{shown}"
    # Nothing recorded.
    left = [name for name in ("run", "sweep", "out", "ro/run", "ro/grid", "ro/search", "ro/out") if (tmp / name).exists()]
    assert not left, f"recorded: {left} created\n{shown}"
    assert _listing(tmp / "trained") == trained_before, f"recorded: the resumed/read run {tmp / 'trained'} changed\n{shown}"
    for db in tmp.glob("*.db"):
        before = runs_before if db.name == "mlflow.db" else 0
        assert _runs_in(db) == before, f"recorded: {db.name} holds {_runs_in(db) - before} new MLflow run(s)\n{shown}"
        assert _studies_in(db) == 0, f"recorded: {db.name} holds an Optuna study\n{shown}"
    new = sorted(_entries(private_runs)) if private_runs else sorted(_entries(PROJECT_ROOT / "runs") - project_before)
    assert not new, f"recorded in the project's runs/: {new}\n{shown}"


def test_the_table_is_the_campaign():
    """At least 100 cases, unique ids, every entry point covered."""
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.command for c in CASES} == {"train", "evaluate", "plot", "plot_gait", "run_testing", "sim_server"}
    assert json.dumps([c._asdict() for c in CASES])  # plain data: benchmarks/fault_campaign.py lists it
