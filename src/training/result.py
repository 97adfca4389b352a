"""TrialResult: what one run hands back to its caller (the CLI, a sweeper, the regression matrix)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("completed", "early_stopped", "pruned", "failed")


@dataclass
class TrialResult:
    """Outcome of one run.

    score: mean of the last ``early_stop.last_n`` values of the score metric (None if never evaluated).
    epochs_run: epochs completed (over all resumes). num_timesteps: env steps trained.
    status: one of STATUSES. error: the traceback of a failed run.
    metrics: the last epoch's metrics plus ``best_score``.
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

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
