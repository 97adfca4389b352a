"""The train command in processes that start warm: one server process imports torch, SB3, Hydra and MLflow
once, then forks a child per run that executes ``experiment/train.py``'s ``main`` with the given arguments
(the same code path, minus several seconds of imports). Tests that kill runs at many points use it to stay
fast; each child is a real process, killed by a real signal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hydrarl.paths import PROJECT_ROOT

_SERVER = r"""
import json, logging, os, sys, traceback
import hydrarl
import mlflow, stable_baselines3, torch  # noqa: F401
import hydrarl.trackers.mlflow_tracker, hydrarl.training.train  # noqa: F401
from hydrarl.launchers import cli
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.argv = ["experiment/train.py", *job["argv"]]
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class WarmCli:
    """The server; :meth:`start` one run at a time, :meth:`wait` for its exit status."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=PROJECT_ROOT)
        assert self.proc.stdout.readline().strip() == "ready"

    def start(self, argv: list[str], log: Path) -> Run:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        return Run(self, int(self.proc.stdout.readline()), Path(log))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class Run:
    """One run in a child of the server: its pid and its output file."""

    def __init__(self, server: WarmCli, pid: int, log: Path):
        self.server, self.pid, self.log = server, pid, log

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for(self, predicate, timeout: float = 180) -> str:
        """Poll the output until ``predicate(output)`` holds; the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if predicate(out):
                return out
            time.sleep(0.05)
        raise TimeoutError(f"run {self.pid}: condition not met in {timeout} s; output:\n{self.output()}")

    def kill(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self) -> int:
        """The exit status (a negative signal number when killed)."""
        return int(self.server.proc.stdout.readline())
