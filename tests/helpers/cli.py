"""The real command line in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydrarl.paths import TRAIN_SCRIPT


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None, wrap: list[str] = (),
            **kwargs) -> subprocess.CompletedProcess:
    """``python experiment/train.py <args>`` in a subprocess (prefixed by ``wrap``, e.g. ``unshare -n``);
    stdout+stderr captured as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*wrap, sys.executable, str(TRAIN_SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env=full_env, **kwargs
    )
