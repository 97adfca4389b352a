"""How a run ends: the one home of run statuses, used by the engine, the trackers, the search and the matrix."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """How a run ended: the one spelling of run statuses. The values are the strings in result files
    (``hydrarl.training.result``), tracker tags and a search's trial attributes."""

    COMPLETED = "completed"          # every epoch ran
    EARLY_STOPPED = "early_stopped"  # the early-stop rule held (``hydrarl.training.stopping``)
    PRUNED = "pruned"                # stopped by a search's pruner
    FAILED = "failed"                # a crash or bad input
    KILLED = "killed"                # interrupted (Ctrl-C, SIGTERM) after a checkpoint: resumable

    @property
    def mlflow(self) -> str:
        """The MLflow run status a run with this status ends in."""
        return {Status.FAILED: "FAILED", Status.KILLED: "KILLED"}.get(self, "FINISHED")
