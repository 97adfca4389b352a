"""Facts about the code and command behind a run, recorded as tags: git commit, dirty flag, command line, host."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from typing import Any

import hydrarl
from hydrarl.paths import PROJECT_ROOT

HOST_TAG = "hydrarl.host"  # the machine a run ran on


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_tags(extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Tags for a new run: ``mlflow.source.git.commit``, ``git.dirty``, ``command``, ``hydrarl.version``, the host."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    tags = {
        "mlflow.source.git.commit": commit or "unknown",
        "git.dirty": "unknown" if status is None else str(bool(status)).lower(),
        "command": shlex.join(["python", *sys.argv]),
        "mlflow.source.name": sys.argv[0] if sys.argv and sys.argv[0] else "hydrarl",
        "hydrarl.version": hydrarl.__version__,
        HOST_TAG: socket.gethostname(),  # whose run_dir it is: a shared store holds runs of many machines
    }
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return tags


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay whole (one param each)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


__all__ = ["run_tags", "flatten"]
