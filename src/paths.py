"""Where things are: the project root, the config tree, the training script, the default MLflow store.

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


def tool_output_dir(tool: str, prefix: str = "") -> Path:
    """Where a tool's output goes when the user names no folder: ``<root>/runs/<tool>/<prefix><date>_<time>``."""
    return PROJECT_ROOT / "runs" / tool / f"{prefix}{time.strftime('%Y-%m-%d_%H-%M-%S')}"
