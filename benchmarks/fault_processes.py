"""The processes, stores and checkpoints the fault campaign (``benchmarks/fault_campaign.py``) works with:
train.py started or run to its end with its own MLflow store and log, waiting, the runs of a sqlite store,
a run's counters, and the processes left of a try."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN = PROJECT_ROOT / "experiment" / "train.py"


def say(msg: str) -> None:
    print(msg, flush=True)


def environment(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMET_API", "HYDRARL_"))}
    env.update(MLFLOW_TRACKING_URI=store, COMET_AUTO_LOG_ENV_DETAILS="false", COMET_ERROR_TRACKING_ENABLE="false",
               MLFLOW_DISABLE_TELEMETRY="true", SDL_VIDEODRIVER="dummy", CUDA_VISIBLE_DEVICES="")
    return env


def train(args: list[str], store: str, log: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    with open(log, "ab") as out:
        return subprocess.run([sys.executable, str(TRAIN), *args], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
                              env=environment(store), timeout=timeout, start_new_session=True)


def start(args: list[str], store: str, log: Path, wrap: list[str] = ()) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([*wrap, sys.executable, str(TRAIN), *args], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
                            env=environment(store), start_new_session=True)
    proc.log_file = out
    return proc


def tail(log: Path, n: int = 3) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " / ".join(lines[-n:])[-400:]


def wait_for(condition: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return condition()
        time.sleep(0.05)
    return False


def mlflow_runs(store: str) -> list[tuple[str, str, str]]:
    """(run id, status, run_dir tag) of every run in a sqlite store."""
    db = store.removeprefix("sqlite:///")
    if not Path(db).exists():
        return []
    with sqlite3.connect(db) as con:
        return con.execute("select r.run_uuid, r.status, coalesce(t.value, '') from runs r left join tags t "
                           "on t.run_uuid = r.run_uuid and t.key = 'run_dir' where r.lifecycle_stage = 'active'").fetchall()


def counters(run_dir: Path) -> dict:
    """Env steps, epochs, gradient steps and evaluation history of a run's last checkpoint."""
    from stable_baselines3 import SAC

    last = run_dir / "checkpoints" / "last"
    state = json.loads((last / "trainer_state.json").read_text())
    model = SAC.load(last / "model.zip", device="cpu")
    return {"num_timesteps": state["num_timesteps"], "epoch": state["epoch"], "gradient_steps": model._n_updates,
            "history": [round(h.get("eval/mean_reward", float("nan")), 6) for h in state["history"]]}


def group_processes(marker: str) -> list[str]:
    """Live processes whose command line contains ``marker`` (a try's own folder): orphans when the run is over."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{proc.name}: {cmdline[:160]}")
    return found
