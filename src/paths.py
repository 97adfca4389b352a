"""Where things are: the project root, the config tree, the training script, the default MLflow store, and
new time-stamped output folders that no two processes share.

The one home of these locations; every other module imports them from here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"
TRAIN_SCRIPT = PROJECT_ROOT / "experiment" / "train.py"


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the project's store ``sqlite:///<project root>/mlflow.db`` (what plain
    ``mlflow ui`` opens when started in the project root)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT}/mlflow.db"


def claim_new_dir(parent: Path, prefix: str = "") -> Path:
    """A folder of this process's own: ``<parent>/<prefix><date>_<time>``, or ``..._1``, ``..._2`` ... when another
    process took that one in the same second. Made here with ``os.mkdir``, which succeeds for one process only,
    so no two processes share a folder whatever their timing. A folder that cannot be made (read-only or full
    disk) is returned unmade: the caller's writable check (``hydrarl.errors.writable_dir``) names the cause."""
    base = Path(parent) / f"{prefix}{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return base
    candidate, n = base, 0
    while True:
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}_{n}")
        except OSError:
            return candidate


def tool_output_dir(tool: str, prefix: str = "") -> Path:
    """Where a tool's output goes when the user names no folder: a new ``<root>/runs/<tool>/<prefix><date>_<time>[_n]``
    of this process's own (:func:`claim_new_dir`)."""
    return claim_new_dir(PROJECT_ROOT / "runs" / tool, prefix)
