"""CSV sink: ``progress.csv`` in the run directory, one row per epoch, a column per metric."""

from __future__ import annotations

import csv
from pathlib import Path

from hydrarl.errors import writable_dir
from hydrarl.trackers.base import Tracker


class CsvTracker(Tracker):
    """Appends a row per ``log_metrics`` call; a new metric adds a column (the file is rewritten)."""

    name = "csv"

    def __init__(self, path: Path):
        """``path``: the CSV file; its folder must be writable (checked now, before the run records anything)."""
        self.path = Path(path)
        writable_dir(self.path.parent, "logger.csv.filename", create=False)

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        if not self.path.exists():
            return [], []
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        row = {"step": step, **metrics}
        columns, rows = self._read()
        new = [k for k in row if k not in columns]
        if new or not columns:
            columns = columns + new
            with self.path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows + [row])
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=columns).writerow(row)
