"""Directory locks: a live process holds ``<dir>/.lock`` (an ``flock``) while it owns the directory.

The kernel releases the lock when its holder dies, SIGKILL included, so "the lock can be taken" means
"no live process owns this directory". That one fact decides whether a RUNNING run or trial is still
alive (then it is left alone) or stale (then it is closed, or adopted by a re-run), with no pid
guessing. The lock file also names its holder (pid and host) for error messages.

Limits: ``flock`` is per machine on most network file systems, and a process forked (not exec'd) by the
holder shares its lock until it exits.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from hydrarl.errors import UserError

LOCK_FILE = ".lock"


def holder(directory: Path) -> str:
    """Who last took the lock of ``directory`` (``pid <n> on <host>``), or ``unknown``."""
    try:
        return (Path(directory) / LOCK_FILE).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


class DirLock:
    """The lock of one directory. ``what`` names the directory in messages ("run directory", "search")."""

    def __init__(self, directory: Path, what: str = "directory"):
        self.directory, self.what = Path(directory), what
        self.fd: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / LOCK_FILE

    def acquire(self) -> DirLock:
        """Take the lock (creating the directory); a UserError naming the holder when a live process has it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"the {self.what} {self.directory} is in use by a live process ({holder(self.directory)}); "
                            "wait for it to end, or stop it first.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (the file stays; a dead holder's lock is free already)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(directory: Path) -> bool:
    """Whether a live process holds the lock of ``directory`` (False when it has no lock file)."""
    try:
        fd = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
