"""TrialResult: what one run hands back to its caller (the CLI, a sweeper, the regression matrix), the
statuses a TrialResult can have, and the result file every run leaves in its run directory."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydrarl.status import Status

RESULT_FILE = "trial_result.json"  # <run dir>/trial_result.json: the TrialResult of a finished run
ERROR_FILE = "error.txt"            # <run dir>/error.txt: the traceback of a crashed run


# The statuses a TrialResult can have (an interrupted run returns none).
STATUSES = (Status.COMPLETED, Status.EARLY_STOPPED, Status.PRUNED, Status.FAILED)


@dataclass
class TrialResult:
    """Outcome of one run.

    score: mean of the last ``early_stop.last_n`` values of the score metric (fewer if fewer epochs; None
    if never evaluated). epochs_run: epochs completed (over all resumes). num_timesteps: env steps trained.
    status: one of STATUSES. error: the traceback of a failed run.
    metrics: the last epoch's metrics plus ``best_score``.
    best_mean: the best mean of ``early_stop.last_n`` consecutive values of the early-stop metric.
    met_at_step: env steps at the end of the first epoch where the early-stop rule held (None: never,
    or no threshold). Both from ``hydrarl.training.stopping.progress``.
    """

    score: float | None
    epochs_run: int
    early_stopped: bool
    status: str
    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    num_timesteps: int = 0
    run_dir: str | None = None
    error: str | None = None
    best_mean: float | None = None
    met_at_step: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {[str(s) for s in STATUSES]}")
        self.status = Status(self.status)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, run_dir: Path) -> Path:
        """Write ``<run_dir>/trial_result.json`` atomically (:func:`write_atomic`)."""
        return write_atomic(Path(run_dir) / RESULT_FILE, json.dumps(self.to_dict(), indent=1))


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it and ``os.replace``: readers see the old
    file or the whole new one. A failed write (a full disk) leaves no partial file, the temporary one removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The TrialResult (as a dict) a run left in ``run_dir``; None if it has none (it never finished)."""
    path = Path(run_dir) / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
