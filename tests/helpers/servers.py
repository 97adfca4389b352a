"""Real servers on 127.0.0.1 that a test starts and stops itself: a throwaway PostgreSQL 15 cluster (Optuna's RDB
storage for a study that several sweeper processes share, or MLflow's backend) and an MLflow tracking server.

The cluster lives in a ``tempfile.mkdtemp`` folder, not in ``workdir``: PostgreSQL refuses to run as root, so as root
its programs run as Debian's ``postgres`` user, who cannot reach pytest's mode-0700 ``/tmp/pytest-of-root``, and its
unix socket's path must stay short. The server's log is copied into ``workdir`` when it stops.
Nothing here listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.helpers.net import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15 (not on PATH)
# 64 sweeper processes on one study hold 128 connections (Optuna's RDBStorage keeps 2 per process, heartbeats add
# none; optimize(n_jobs=k) holds k, k + 1 with heartbeats), MLflow's server up to 15, superusers' reserve 3.
# Shared memory (anonymous mmap, not System V; ~1 MB in /dev/shm): 46 MB with shared_buffers=32MB (29 MB at 16MB).
MAX_CONNECTIONS = 200
POSTGRES_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": str(MAX_CONNECTIONS),
    "shared_buffers": "'32MB'",
    "fsync": "off",  # a test's data dies with the test: durability buys nothing and costs start-up and commits
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
IS_ROOT = os.geteuid() == 0


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"(no {path.name})"


def _pg(program: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """One of PostgreSQL's programs, as ``postgres`` when we are root; raises with its output when it fails."""
    command = [str(PG_BIN / program), *args]
    if IS_ROOT:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{program} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def create_database(url: str, name: str) -> str:
    """A new, empty database ``name`` on the server of ``url`` (from :func:`postgres_server`); its URL.

    Optuna and MLflow each keep their schema version in a table named ``alembic_version``: give each its own database.
    """
    parsed = make_url(url)
    subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(parsed.port), "-U", "postgres", name],
                   check=True, capture_output=True, timeout=30)
    return parsed.set(database=name).render_as_string(hide_password=False)


@contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free port of 127.0.0.1 with an empty database ``studies``, for the block.

    Yields ``postgresql+psycopg2://postgres@127.0.0.1:<port>/studies`` (trust auth, no password). Its unix socket is
    in the data folder, not /var/run. On exit the server is stopped (``-m immediate``) and its data removed;
    ``workdir/postgres.log`` keeps its log. Start-up (initdb, start, createdb) takes about 0.7 s.
    """
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"no {PG_BIN}/initdb: apt-get install -y --no-install-recommends postgresql-15")
    workdir.mkdir(parents=True, exist_ok=True)
    # Not in workdir (see the module's docstring): a socket's path has at most 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="hydrarl-pg-"))
    if IS_ROOT:
        root.chmod(0o755)
        shutil.chown(root, "postgres", "postgres")
    data, log, port = root / "data", root / "postgres.log", free_port()
    try:
        _pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", cwd=root)
        settings = {**POSTGRES_SETTINGS, "port": str(port), "unix_socket_directories": f"'{data}'"}
        with open(data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        try:
            _pg("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "start", cwd=root)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\npostgres.log: {_tail(log)}") from None
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/studies"
        create_database(url, "studies")
        yield url
    finally:
        try:
            if (data / "postmaster.pid").exists():  # also after a start that timed out
                _pg("pg_ctl", "-D", str(data), "stop", "-m", "immediate", "-w", cwd=root)
        finally:
            if log.exists():
                shutil.copyfile(log, workdir / "postgres.log")
            shutil.rmtree(root, ignore_errors=True)


def mlflow_command(port: int, backend_uri: str, artifacts: Path) -> list[str]:
    """``mlflow server`` (MLflow 3.17) on 127.0.0.1:``port`` with one uvicorn worker, serving artifacts from
    ``artifacts`` (clients upload through the server: runs get ``mlflow-artifacts:/`` locations)."""
    return [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", backend_uri, "--serve-artifacts", "--artifacts-destination", str(artifacts)]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@contextmanager
def mlflow_server(workdir: Path, backend_uri: str, timeout: float = 120) -> Iterator[str]:
    """An MLflow tracking server on a free port of 127.0.0.1 over ``backend_uri`` (``sqlite:///…`` or a
    ``postgresql+psycopg2://`` URL) with artifacts in ``workdir/artifacts``; yields ``http://127.0.0.1:<port>``.

    Waits for ``/health`` (raising with the tail of ``workdir/mlflow.log`` after ``timeout`` s or if it exits). The
    server runs in its own session and on exit its whole process group (the CLI and uvicorn's processes) gets SIGTERM,
    then SIGKILL after 10 s. Telemetry and the job runner (huey consumers, a folder in /dev/shm) are off.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), workdir / "mlflow.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        server = subprocess.Popen(mlflow_command(port, backend_uri, workdir / "artifacts"), cwd=workdir, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _answers(f"{uri}/health"):
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({server.returncode}): {_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer within {timeout} s: {_tail(log)}")
            time.sleep(0.25)
        yield uri
    finally:
        _stop_group(server)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies left for init to reap do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _stop_group(server: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left of it after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while (server.poll() is None or _group_alive(server.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if server.poll() is not None and not _group_alive(server.pid):
            break
    server.wait(timeout=5)
