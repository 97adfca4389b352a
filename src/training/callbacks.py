"""What the Trainer hooks into SB3's ``learn``: progress bar, graceful stop, SB3 log capture,
and learning-rate/exploration schedules that span the whole run instead of one epoch."""

from __future__ import annotations

import signal
import time
import types
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from tqdm import tqdm

import hydrarl


class StopFlag:
    """Set by the first SIGINT/SIGTERM: training stops after the current env step and checkpoints.
    A second SIGINT interrupts at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopFlag:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals to the caller
                pass
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class TrainerCallback(BaseCallback):
    """Advances the progress bar and ends ``learn`` early when the stop flag is set.

    ``first_step_seconds``: seconds from ``import hydrarl`` to the first env step of this process.
    """

    def __init__(self, stop: StopFlag, bar: tqdm | None):
        super().__init__()
        self.stop = stop
        self.bar = bar
        self.first_step_seconds: float | None = None
        self._reported = False

    def take_first_step_seconds(self) -> float | None:
        """``first_step_seconds`` once (None afterwards, and before the first step)."""
        if self._reported or self.first_step_seconds is None:
            return None
        self._reported = True
        return self.first_step_seconds

    def _on_step(self) -> bool:
        if self.first_step_seconds is None:
            self.first_step_seconds = time.time() - hydrarl.IMPORTED_AT
        if self.bar is not None:
            self.bar.update(self.training_env.num_envs)
        return not self.stop


class CaptureWriter(KVWriter):
    """Keeps the latest numeric value SB3 dumped for each key (train/*, rollout/*, time/*)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        for key, value in key_values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.values[key] = float(value)

    def close(self) -> None:
        pass


def capture_sb3_logs(model: BaseAlgorithm) -> CaptureWriter:
    """Route the model's SB3 logger into a CaptureWriter (nothing printed, nothing written)."""
    writer = CaptureWriter()
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    return writer


def sb3_metrics(model: BaseAlgorithm, writer: CaptureWriter) -> dict[str, float]:
    """Dumped values plus those recorded since the last dump."""
    pending = {k: float(v) for k, v in model.logger.name_to_value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**writer.values, **pending}


# Attributes this module sets on a model that must never be saved with it (a bound method would
# pickle the whole model, replay buffer included, into model.zip).
RUNTIME_ATTRIBUTES = ["_update_current_progress_remaining"]


def schedules_over_run(model: BaseAlgorithm, total_timesteps: int) -> None:
    """Make SB3's progress (learning-rate and exploration schedules) run from 1 to 0 over the whole
    run's ``total_timesteps``, not over each ``learn`` chunk as SB3 would when learn is called per epoch.
    Save such a model with ``exclude=RUNTIME_ATTRIBUTES``; re-apply after loading."""

    def update(self, num_timesteps: int, _chunk_total: int) -> None:
        self._current_progress_remaining = max(0.0, 1.0 - float(num_timesteps) / float(total_timesteps))

    model._update_current_progress_remaining = types.MethodType(update, model)
