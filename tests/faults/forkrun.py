"""Many short command lines, each a real process, without paying the imports each time.

The bad-input table (``test_bad_inputs.py``) runs ~120 command lines of the project's entry points. A
fresh interpreter costs 3-5 s of imports each (torch, SB3, Hydra, MLflow), so instead one helper process
(this file, ``python tests/faults/forkrun.py``) imports them once — the same preload as the matrix's fork
server (``hydrarl.launchers.forkserver._preload``) plus the analysis tools, the matrix and the simulator —
and then runs each command in a forked child that starts exactly as the command's own interpreter would:
its own session and process group, stdin from /dev/null, stdout and stderr into files, its own
environment and working directory, ``sys.argv`` as typed, and the real script run as ``__main__``
(``runpy``: ``experiment/*.py`` by path, ``./run_testing.sh`` and the simulator as ``python -m``
modules). Its exit status is what the interpreter would give: ``sys.exit`` codes as is, an uncaught
exception printed as a traceback with status 1, a signal as ``-signum``. As root, the child also gets its
own ``<project>/runs`` (a bind mount of a folder of the case's, in a private mount namespace), so that what
a command writes into the project's default output locations is seen, and blamed on the right command. The child must end within the
case's timeout (else it is killed: ``timed_out``), and when it has ended, no process of its group may be
left (``leftovers``: killed, and reported).

Protocol: one JSON request per line on stdin, one JSON reply per line on the helper's original stdout;
the helper's own prints go to its stderr. :class:`ForkRunner` is the test side.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# command name -> how its process starts: ("path", script) is `python <script>`, ("module", name) is `python -m <name>`.
COMMANDS = {
    "train": ("path", "experiment/train.py"),
    "evaluate": ("path", "experiment/evaluate.py"),
    "plot": ("path", "experiment/plot.py"),
    "plot_gait": ("path", "experiment/plot_gait.py"),
    "run_testing": ("module", "hydrarl.launchers.run_testing"),  # what ./run_testing.sh execs
    "sim_server": ("module", "hydrarl.envs.penguinpi.sim_server"),
    "python": ("code", None),  # python -c <first argument> (the tests' set-up: a trained run, a store)
}


# -- the test's side ---------------------------------------------------------------------------------------

class ForkRunner:
    """The helper process; :meth:`run` one command in a forked child of it."""

    def __init__(self, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
                                     env={**os.environ, **(env or {})})
        ready = self.proc.stdout.readline()
        if not ready.startswith('{"ready"'):
            raise RuntimeError(f"the fork helper did not start (exit status {self.proc.poll()})")

    def run(self, command: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float,
            private_runs: Path | None = None) -> dict:
        """Run ``command args`` (a key of COMMANDS) in ``cwd`` with exactly ``env``; the reply: ``status``,
        ``stdout``, ``stderr``, ``timed_out``, ``leftovers`` (processes left in its group), ``seconds``.
        ``private_runs`` (root only): a folder the process sees as ``<project>/runs``."""
        out, err = cwd / ".case.stdout", cwd / ".case.stderr"
        request = {"command": command, "args": args, "cwd": str(cwd), "env": env, "timeout": timeout,
                   "stdout": str(out), "stderr": str(err), "private_runs": str(private_runs) if private_runs else None}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork helper died (exit status {self.proc.wait()})")
        reply = json.loads(line)
        reply["stdout"], reply["stderr"] = out.read_text(errors="replace"), err.read_text(errors="replace")
        out.unlink()
        err.unlink()
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the helper's side -------------------------------------------------------------------------------------

def _preload() -> None:
    from hydrarl.launchers.forkserver import _preload as matrix_preload

    matrix_preload()  # torch, SB3, gymnasium, Hydra's first composition, the train CLI
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (the sqlite store's ORM: ~2.5 s)
    import mlflow.tracking  # noqa: F401

    import hydra_plugins.rl_optuna_sweeper.rl_optuna_sweeper  # noqa: F401
    import hydrarl.analysis.evaluate_agents  # noqa: F401
    import hydrarl.analysis.gait  # noqa: F401
    import hydrarl.analysis.plot  # noqa: F401
    import hydrarl.analysis.runs  # noqa: F401
    import hydrarl.envs.penguinpi.sim_server  # noqa: F401
    import hydrarl.launchers.run_testing  # noqa: F401
    import hydrarl.sweep.hydra_sweep  # noqa: F401


def _child(request: dict, keep: list[int]) -> None:
    """In the forked process: become the command's process, run it, exit as its interpreter would."""
    code = 1
    try:
        os.setsid()
        for fd in keep:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for target, fd in ((0, null), (1, out), (2, err)):
            os.dup2(fd, target)
            os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        if request.get("private_runs"):
            _private_runs(request["private_runs"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import runpy

        import hydrarl

        hydrarl.IMPORTED_AT = time.time()
        kind, target = COMMANDS[request["command"]]
        try:
            if kind == "path":
                script = str(PROJECT_ROOT / target)
                sys.argv = [script, *request["args"]]
                sys.path[0] = str(Path(script).parent)
                runpy.run_path(script, run_name="__main__")
            elif kind == "code":
                sys.argv = ["-c", *request["args"][1:]]
                sys.path[0] = ""
                exec(compile(request["args"][0], "<string>", "exec"), {"__name__": "__main__"})
            else:
                sys.modules.pop(target, None)  # as `python -m`: the module runs as __main__ only
                sys.argv = [target, *request["args"]]
                sys.path[0] = request["cwd"]
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:  # as the interpreter treats it
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            import traceback

            traceback.print_exc()
            code = 130
        except BaseException:  # an uncaught exception: its traceback and status 1
            import traceback

            traceback.print_exc()
            code = 1
    except BaseException:  # the set-up itself failed
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit
            import logging
            import threading

            threading._shutdown()  # the interpreter waits for non-daemon threads, then runs atexit
            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF if isinstance(code, int) else 1)


def _private_runs(folder: str) -> None:
    """Give this process its own ``<project>/runs``: ``folder`` bind-mounted over it in a private mount
    namespace (root only), so that whatever a command writes there is seen as its own, not another's."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_rec, ms_private, ms_bind = 0x00020000, 0x4000, 1 << 18, 0x1000
    if libc.unshare(clone_newns) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, ms_rec | ms_private, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    runs = PROJECT_ROOT / "runs"
    runs.mkdir(exist_ok=True)
    if libc.mount(folder.encode(), str(runs).encode(), None, ms_bind, None) != 0:
        raise OSError(ctypes.get_errno(), f"mount --bind {folder} {runs}")


def _wait(pid: int, timeout: float) -> tuple[int | None, bool]:
    """The child's exit status (``-signum`` when killed by one) and whether it ran out of time (then killed)."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    timed_out = not ready
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), timed_out


def _leftovers(pgid: int) -> list[str]:
    """Processes still in the child's group once it ended (each named by its command line); then killed."""
    names = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) == pgid:
                names.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip())
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
    if names:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return names


def serve() -> None:
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # the helper's own prints never mix with the replies
    _preload()
    import torch

    assert not torch.cuda.is_initialized(), "CUDA was initialised while importing: a forked child could not use it"
    replies = os.fdopen(reply_fd, "w", buffering=1)
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.time()
        pid = os.fork()
        if pid == 0:
            _child(request, [reply_fd])
        status, timed_out = _wait(pid, request["timeout"])
        left = _leftovers(pid)
        replies.write(json.dumps({"status": status, "timed_out": timed_out, "leftovers": left,
                                  "seconds": round(time.time() - start, 2)}) + "\n")


if __name__ == "__main__":
    serve()
