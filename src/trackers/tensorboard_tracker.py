"""TensorBoard sink: scalar events under ``<run dir>/tensorboard``; view with ``tensorboard --logdir runs/``."""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from hydrarl.trackers.base import Tracker


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.writer: SummaryWriter | None = None

    def start(self, record) -> None:
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def finish(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()
