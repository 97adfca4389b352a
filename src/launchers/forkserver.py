"""A fork server for the function tier's jobs: the imports (torch, SB3, Hydra, gymnasium: ~2-5 s) once,
then one forked process per job instead of one fresh interpreter per job.

``run_testing -t function`` starts ``python -m hydrarl.launchers.forkserver <socket>`` and puts the
socket in ``$HYDRARL_FORKSERVER`` for its jobs. A job's command is unchanged (``python -m
hydrarl.launchers.roundtrip --train ...``, runnable by hand); with the variable set, that process only
hands its arguments, environment, working directory and stdout/stderr to the server (:func:`delegate`)
and waits. The server forks a child that starts exactly as that process would have, but with the
modules already imported: its own process and session, its own environment (``CUDA_VISIBLE_DEVICES``
included), its output into the job's log; its exit status (or signal) becomes the job's. SIGTERM/SIGINT
to the job reach the child's process group; a job that dies unannounced has its child killed. When the
server cannot be reached the job runs in its own interpreter as before.

The server runs no model code before forking (no torch thread pools, no GL context), and forks from
a single thread.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_VAR = "HYDRARL_FORKSERVER"
_HEADER = struct.Struct("!I")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


# -- the tier's side ----------------------------------------------------------------------------------

class ForkServer:
    """The server as a subprocess of the tier (output in ``log``). It starts importing at once;
    :meth:`wait_ready` then points this process's jobs at it (``$HYDRARL_FORKSERVER``), :meth:`close` ends
    it. It also ends when this process does (its stdin closes)."""

    def __init__(self, log: Path):
        self.dir = tempfile.mkdtemp(prefix="hydrarl-fork-")  # short: a socket path has ~100 characters at most
        self.path = os.path.join(self.dir, "sock")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hydrarl.launchers.forkserver", self.path],
                                         stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> bool:
        """Wait until it listens; True then (jobs go to it), False if it died or took too long (jobs start
        their own interpreters)."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            if os.path.exists(self.path):
                os.environ[ENV_VAR] = self.path
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if os.environ.get(ENV_VAR) == self.path:
            del os.environ[ENV_VAR]
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdin:
            self.proc.stdin.close()
        for leftover in (self.path, self.dir):
            try:
                os.remove(leftover) if leftover == self.path else os.rmdir(leftover)
            except OSError:
                pass


# -- the job's side ----------------------------------------------------------------------------------

def delegate(argv: list[str]) -> int | None:
    """Run ``roundtrip <argv>`` in a child of the server in ``$HYDRARL_FORKSERVER``; its exit status
    (a child killed by a signal kills this process by the same signal). None when there is no server."""
    path = os.environ.get(ENV_VAR)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    request = json.dumps({"argv": argv, "env": env, "cwd": os.getcwd()}).encode()
    sys.stdout.flush()
    sys.stderr.flush()
    socket.send_fds(conn, [_HEADER.pack(len(request)) + request], [0, 1, 2])
    pid = _HEADER.unpack(_recv_exact(conn, _HEADER.size))[0]

    def forward(signum, frame):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:  # not yet its own group
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            status = json.loads(_recv_exact(conn, _HEADER.unpack(_recv_exact(conn, _HEADER.size))[0]))["status"]
            break
        except InterruptedError:
            continue
        except ConnectionError:
            return 1  # the server went away: the job's outcome is unknown
    if status < 0:  # killed by a signal: end the same way, so the scheduler sees what it would have seen
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


# -- the server's side ---------------------------------------------------------------------------------

def _preload() -> None:
    """What every job imports (the rest, per env or algorithm, is imported in the child as needed)."""
    import gymnasium  # noqa: F401
    import sb3_contrib  # noqa: F401
    import stable_baselines3  # noqa: F401
    import torch._dynamo  # noqa: F401  (the first optimizer imports it: ~2 s)

    for optional in ("mujoco", "pygame"):  # the MuJoCo envs (~0.5 s), CarRacing (~0.3 s); extras may be absent
        try:
            __import__(optional)
        except ImportError:
            pass
    # Hydra's and the override grammar's first-use set-up (~0.5 s a job): one composition, pure Python.
    from hydra.core.hydra_config import HydraConfig

    from hydrarl.config.compose import compose

    compose(["env=CartPole", "algorithm=a2c", "logger=[]"])
    HydraConfig.instance().cfg = None  # a job starts with no Hydra config set, as in its own interpreter

    import hydrarl.agents.factory  # noqa: F401
    import hydrarl.envs.factory  # noqa: F401
    import hydrarl.launchers.cli  # noqa: F401
    import hydrarl.launchers.roundtrip  # noqa: F401
    import hydrarl.training.train  # noqa: F401


def _child(request: dict, fds: list[int], listener: socket.socket, conns: list[socket.socket]) -> None:
    """In the forked process: become the job's process, run it, exit with its status. Never returns."""
    code = 1
    try:
        os.setsid()
        for sock in (listener, *conns):
            sock.close()
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import hydrarl
        from hydrarl.errors import exit_now_on_user_error
        from hydrarl.launchers.roundtrip import train_then_roundtrip

        hydrarl.IMPORTED_AT = time.time()  # start-up is counted from the job's start, as in its own interpreter
        sys.argv = ["-m", *request["argv"]]
        try:
            with exit_now_on_user_error():
                code = train_then_roundtrip(request["argv"][1:])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
    except BaseException:  # as an uncaught exception would: the traceback in the log, status 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit
            import logging

            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def serve(path: str) -> None:
    """Accept jobs on the Unix socket ``path`` until SIGTERM; one forked child per job."""
    _preload()
    import torch

    if torch.cuda.is_initialized():  # a forked child could not use CUDA: leave the jobs their own interpreters
        print("CUDA was initialised while importing: not serving", file=sys.stderr, flush=True)
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # the socket appears only once it accepts connections
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    children: dict[int, socket.socket] = {}  # child pid -> its job's connection
    print(f"fork server ready on {path}", flush=True)
    stopping_since = None
    while not stop or children:
        if stop:  # the tier is over or interrupted: no child outlives it (SIGTERM, then SIGKILL after 10 s)
            now = time.time()
            stopping_since = stopping_since or now
            for pid in children if now == stopping_since or now - stopping_since > 10 else ():
                try:
                    os.killpg(pid, signal.SIGTERM if now == stopping_since else signal.SIGKILL)
                except ProcessLookupError:
                    pass
        ready, _, _ = select.select([listener, sys.stdin, *children.values()], [], [], 0.05)
        for sock in ready:
            if sock is sys.stdin:  # the tier's process ended (or closed us): stop
                if not os.read(sys.stdin.fileno(), 1):
                    stop = True
            elif sock is listener:
                conn, _ = listener.accept()
                try:
                    msg, fds, _, _ = socket.recv_fds(conn, _HEADER.size + 65536, 3)
                    size = _HEADER.unpack(msg[:_HEADER.size])[0]
                    body = msg[_HEADER.size:]
                    if len(body) < size:
                        body += _recv_exact(conn, size - len(body))
                    request = json.loads(body)
                except (OSError, ValueError, ConnectionError) as exc:
                    print(f"bad request: {exc}", file=sys.stderr, flush=True)
                    conn.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    os.close(sys.stdin.fileno())
                    _child(request, fds, listener, [conn, *children.values()])
                for fd in fds:
                    os.close(fd)
                conn.sendall(_HEADER.pack(pid))
                children[pid] = conn
            else:  # a job's connection closed before its child ended: the job is gone, so is the child
                pid = next(p for p, c in children.items() if c is sock)
                if not sock.recv(1, socket.MSG_PEEK):
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                reply = json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode()
                try:
                    conn.sendall(_HEADER.pack(len(reply)) + reply)
                except OSError:
                    pass
                conn.close()
    listener.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    serve(sys.argv[1])
