"""Real storage faults for tests: a folder nobody here can write to, and a small disk that fills up.

Root (whom file modes do not stop) gets a read-only tmpfs mount and a size-limited tmpfs; other users
get a mode-0555 folder, and the small disk is skipped (mounting needs root).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0


def _mount(*args: str) -> None:
    out = subprocess.run(["mount", *args], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount here ({out.stderr.strip()})")


@contextmanager
def readonly_dir(path: Path) -> Iterator[Path]:
    """``path`` (created) as a folder that cannot be written, for the length of the block."""
    path.mkdir(parents=True, exist_ok=True)
    if IS_ROOT:
        _mount("-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path))
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)


class SmallDisk:
    """A tmpfs of ``size_kib`` KiB mounted at ``path``; :meth:`resize` gives space back (or takes it)."""

    def __init__(self, path: Path):
        self.path = path

    def resize(self, size_kib: int) -> None:
        _mount("-o", f"remount,size={size_kib}k", str(self.path))


@contextmanager
def small_disk(path: Path, size_kib: int) -> Iterator[SmallDisk]:
    """A disk of ``size_kib`` KiB at ``path`` for the length of the block (skipped unless root)."""
    if not IS_ROOT:
        pytest.skip("a small disk needs a tmpfs mount, which needs root")
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path))
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
