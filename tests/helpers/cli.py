"""The real command line in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydrarl.paths import TRAIN_SCRIPT

# A prefix that runs a command the way a shell script's background job runs it: with SIGINT ignored, so that only the
# program's own handler can make a Ctrl-C stop it. The shell ignores SIGINT and execs the command (same pid); unlike a
# preexec_fn, no Python code runs in the forked child, which can deadlock a test worker whose threads (JAX's) hold locks.
SIGINT_IGNORED = ["sh", "-c", 'trap "" INT; exec "$0" "$@"']


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None, wrap: list[str] = (),
            **kwargs) -> subprocess.CompletedProcess:
    """``python experiment/train.py <args>`` in a subprocess (prefixed by ``wrap``, e.g. ``unshare -n``);
    stdout+stderr captured as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*wrap, sys.executable, str(TRAIN_SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env=full_env, **kwargs
    )
