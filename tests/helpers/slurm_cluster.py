"""A real single-node SLURM cluster on 127.0.0.1 for tests, with real job accounting: munged, a private
MariaDB server, slurmdbd, slurmctld and slurmd, all under ``workdir`` (config, munge key and socket, database,
state, logs; /etc is not used), reached with ``SlurmCluster.env`` (``SLURM_CONF``). Needs root (slurmd starts
jobs as their submitter) and Debian 12's ``slurm-wlm munge slurmdbd mariadb-server`` (Slurm 22.05).

Why slurmdbd and MariaDB: Slurm 22.05 keeps job accounting only through slurmdbd, which stores it in MySQL or
MariaDB; without them plain ``sacct`` exits 1 ("Slurm accounting storage is disabled"). submitit (so
hydra-submitit-launcher, which submits arrays) polls ``sacct -o JobID,State,NodeList --parsable2 -j ID`` to
learn that a job ended, array tasks as ``ID_T``; a job it does not find stays UNKNOWN (running) for it. With
slurmdbd, that plain ``sacct`` answers, pending, running and finished jobs alike.

The database: mariadbd on an empty data directory with ``--skip-grant-tables`` (no system tables, no users,
no passwords; it listens on 127.0.0.1 only), which slurmdbd fills with its schema. slurmctld registers the
cluster in slurmdbd itself. The database's files are deleted when the cluster stops; the logs stay.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tests.helpers.net import free_port

BINARIES = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "scancel", "sinfo")
APT_PACKAGES = "slurm-wlm munge slurmdbd mariadb-server"
START_TIMEOUT_S = 30.0
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # the daemons are in sbin
# Job states of a job that has ended (sacct's man page, JOB STATE CODES); the others are pending or running.
FINISHED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
            "TIMEOUT"}


class SlurmUnavailable(RuntimeError):
    """This machine cannot run the cluster (not root, or Slurm/munge/MariaDB not installed): tests skip on it."""


class SacctRow(NamedTuple):
    """A job's line in ``sacct``: its id (``ID``, or ``ID_T`` for an array task), state (PENDING, RUNNING,
    COMPLETED, CANCELLED, FAILED, TIMEOUT...; sacct's ``CANCELLED by <uid>`` is cut to its first word) and exit
    code as Slurm writes it (``status:signal``, e.g. ``0:0``)."""

    job_id: str
    state: str
    exit_code: str


@dataclass
class SlurmCluster:
    """A running cluster: what a client needs to reach it, and the few commands tests use."""

    workdir: Path
    env: dict[str, str]
    partition: str = "cpu"
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster, its output captured."""
        return subprocess.run(args, env={**os.environ, **self.env}, capture_output=True, text=True, check=check, timeout=30)

    def sbatch(self, *args: str) -> str:
        """Submit a batch job (``sbatch --parsable <args>``) to the partition; its job id."""
        out = self.run("sbatch", "--parsable", f"--partition={self.partition}", f"--chdir={self.workdir}", *args)
        return out.stdout.strip().split(";")[0]

    def sacct(self, job_id: str) -> list[SacctRow]:
        """``sacct``'s lines for ``job_id``, its allocation only (no ``.batch`` steps; an array's id gives its tasks,
        ``ID_[0-1]`` while they are pending); CalledProcessError for an id that is not a job id. A job appears once
        slurmctld has told slurmdbd: within a second for one that starts at once, ~5 s for one left pending."""
        out = self.run("sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State,ExitCode",
                       f"--jobs={job_id}")
        rows = (line.split("|") for line in out.stdout.splitlines() if line)
        return [SacctRow(job, state.split(" ")[0], code) for job, state, code in rows]

    def wait_finished(self, job_id: str, timeout_s: float = 15.0) -> SacctRow:
        """Poll ``sacct`` until ``job_id`` has finished (a state in FINISHED); its line (AssertionError after
        ``timeout_s``). A requeued job is PENDING again until its last run ends."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = [row for row in self.sacct(job_id) if row.job_id == job_id and row.state in FINISHED]
            if rows:
                return rows[-1]
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} not finished after {timeout_s}s:\n{self.run('squeue', check=False).stdout}")

    def logs(self) -> str:
        """The last 20 lines of each daemon's log, for failure messages."""
        logs = sorted((self.workdir / "log").iterdir())
        return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:]) for log in logs)


def _check_machine() -> None:
    """Raise SlurmUnavailable with the reason if this machine cannot run the cluster."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("a SLURM test cluster needs root (slurmd runs jobs as their submitting user)")
    missing = [name for name in BINARIES if shutil.which(name, path=SEARCH_PATH) is None]
    if missing:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed (apt-get install -y --no-install-recommends {APT_PACKAGES})")


def _write_config(workdir: Path, munge_socket: Path, db_port: int, dbd_port: int) -> Path:
    """slurm.conf for one node ``localhost`` with this machine's CPUs and memory (``slurmd -C``) and one
    partition ``cpu``, and slurmdbd.conf beside it (where slurmdbd looks: SLURM_CONF's folder); ports free now,
    paths under workdir."""
    for sub in ("state", "spool", "log", "mariadb"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    dbd = {
        "DbdHost": "localhost", "DbdAddr": "127.0.0.1", "DbdPort": dbd_port, "SlurmUser": "root",
        "AuthType": "auth/munge", "AuthInfo": f"socket={munge_socket}",
        "PidFile": workdir / "slurmdbd.pid", "LogFile": workdir / "log" / "slurmdbd.log",
        "StorageType": "accounting_storage/mysql", "StorageHost": "127.0.0.1", "StoragePort": db_port,
        "StorageUser": "root", "StorageLoc": "slurm_acct_db",
    }
    dbd_conf = workdir / "slurmdbd.conf"
    dbd_conf.touch(mode=0o600)  # slurmdbd refuses a config others may read (it may hold the database password)
    dbd_conf.write_text("".join(f"{key}={value}\n" for key, value in dbd.items()))
    slurmd = str(shutil.which("slurmd", path=SEARCH_PATH))
    hardware = subprocess.run([slurmd, "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    settings = {
        "ClusterName": "hydrarltest", "SlurmctldHost": "localhost(127.0.0.1)",
        "SlurmctldPort": free_port(), "SlurmdPort": free_port(), "SlurmUser": "root", "SlurmdUser": "root",
        "AuthType": "auth/munge", "CredType": "cred/munge", "AuthInfo": f"socket={munge_socket}",
        "StateSaveLocation": workdir / "state", "SlurmdSpoolDir": workdir / "spool",
        "SlurmctldPidFile": workdir / "slurmctld.pid", "SlurmdPidFile": workdir / "slurmd.pid",
        "SlurmctldLogFile": workdir / "log" / "slurmctld.log", "SlurmdLogFile": workdir / "log" / "slurmd.log",
        # Containers have no usable cgroups: track job processes by parent pid, bind no CPUs.
        "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none", "JobAcctGatherType": "jobacct_gather/none",
        # Allocate single CPUs, so that one-CPU jobs run side by side; trust the node line below.
        "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_CPU", "SlurmdParameters": "config_overrides",
        # Start a batch job when it is submitted (the default waits up to 3 s to batch them up).
        "SchedulerParameters": "batch_sched_delay=0",
        "MpiDefault": "none", "ReturnToService": 2, "SlurmdTimeout": 30, "InactiveLimit": 0, "KillWait": 2,
        "MinJobAge": 5, "MailProg": "/bin/true",
        "AccountingStorageType": "accounting_storage/slurmdbd", "AccountingStorageHost": "localhost",
        "AccountingStoragePort": dbd_port, "AccountingStoragePass": munge_socket,  # the munge socket for slurmdbd
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines.append(re.sub(r"^NodeName=\S+", "NodeName=localhost NodeAddr=127.0.0.1", hardware) + " State=UNKNOWN")
    lines.append("PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP")
    conf = workdir / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _start(cluster: SlurmCluster, name: str, *args: str) -> None:
    """Start a daemon in the foreground, in its own process group, its output in log/<name>.out."""
    with open(cluster.workdir / "log" / f"{name}.out", "wb") as out:
        cluster.daemons.append(subprocess.Popen([str(shutil.which(name, path=SEARCH_PATH)), *args],
                                                env={**os.environ, **cluster.env}, stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True))


def _wait_for(cluster: SlurmCluster, what: str, ready: Callable[[], bool]) -> None:
    """Wait until ``ready()``, or raise with the daemons' logs if one has exited or after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if dead := [Path(proc.args[0]).name for proc in cluster.daemons if proc.poll() is not None]:
            raise RuntimeError(f"SLURM daemons exited at start: {dead}\n{cluster.logs()}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S}s\n{cluster.logs()}")


def _answers(port: int) -> bool:
    """Whether a server listens on 127.0.0.1:port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _cancel_jobs(cluster: SlurmCluster) -> None:
    """Cancel every job still queued or running and wait (10 s at most) until the queue is empty."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        jobs = cluster.run("squeue", "--noheader", "--format=%i", check=False).stdout.split()
        if not jobs:
            return
        cluster.run("scancel", *jobs, check=False)
        time.sleep(0.3)


def cluster_pids(conf: Path) -> list[int]:
    """Processes of this cluster (daemons, slurmstepd, jobs submitted from a process that had its env): their
    environment names its slurm.conf."""
    marker, pids = f"SLURM_CONF={conf}\0".encode(), []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int(proc.name) != os.getpid() and marker in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _stop(cluster: SlurmCluster, conf: Path) -> None:
    """Stop every daemon, last started first (SIGTERM to its process group, SIGKILL after 10 s), then kill
    what is left."""
    for proc in reversed(cluster.daemons):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for pid in cluster_pids(conf):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def slurm_cluster(workdir: Path) -> Iterator[SlurmCluster]:
    """Start munged, mariadbd, slurmdbd, slurmctld and slurmd in ``workdir`` and wait until the node is idle; on
    exit cancel all jobs, stop them all and delete the database. Raises SlurmUnavailable where this machine cannot
    run it."""
    _check_machine()
    key, munge_socket, db = workdir / "munge.key", workdir / "munge.sock", workdir / "mariadb"
    db_port, dbd_port = free_port(), free_port()
    conf = _write_config(workdir, munge_socket, db_port, dbd_port)
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cluster = SlurmCluster(workdir, {"SLURM_CONF": str(conf)})
    try:
        # --force: munged refuses a socket under folders not all may enter (pytest's are 0700); only root uses it.
        _start(cluster, "munged", "--foreground", "--force", f"--key-file={key}", f"--socket={munge_socket}",
               f"--pid-file={workdir / 'munged.pid'}", f"--log-file={workdir / 'log' / 'munged.log'}",
               f"--seed-file={workdir / 'munged.seed'}")
        # --no-defaults: not /etc/mysql. Small InnoDB files, no fsync, all tables in one file: a throwaway
        # database that starts, and takes slurmdbd's schema, in a fraction of a second each.
        _start(cluster, "mariadbd", "--no-defaults", f"--datadir={db}", f"--socket={workdir / 'mariadb.sock'}",
               f"--pid-file={workdir / 'mariadb.pid'}", f"--log-error={workdir / 'log' / 'mariadb.log'}",
               f"--port={db_port}", "--bind-address=127.0.0.1", "--user=root", "--skip-grant-tables",
               "--skip-name-resolve", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
               "--innodb-data-file-path=ibdata1:4M:autoextend", "--innodb-temp-data-file-path=ibtmp1:4M:autoextend",
               "--innodb-file-per-table=0", "--innodb-flush-method=nosync", "--innodb-flush-log-at-trx-commit=0",
               "--innodb-doublewrite=0", "--innodb-fast-shutdown=3")
        _wait_for(cluster, "munged and mariadbd", lambda: munge_socket.exists() and _answers(db_port))
        _start(cluster, "slurmdbd", "-D")
        _wait_for(cluster, "slurmdbd", lambda: _answers(dbd_port))
        _start(cluster, "slurmctld", "-D")
        # slurmd registers with slurmctld at once if it is up, else it retries a second later.
        _wait_for(cluster, "slurmctld", lambda: " is UP" in cluster.run("scontrol", "ping", check=False).stdout)
        _start(cluster, "slurmd", "-D", "-N", "localhost")
        _wait_for(cluster, "the SLURM node", lambda: cluster.run("sinfo", "--noheader", "--Node", "--format=%t",
                                                                  check=False).stdout.strip() == "idle")
        yield cluster
    finally:
        if len(cluster.daemons) == 5 and all(proc.poll() is None for proc in cluster.daemons):
            _cancel_jobs(cluster)
        _stop(cluster, conf)
        shutil.rmtree(db, ignore_errors=True)
