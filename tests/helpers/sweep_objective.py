"""A synthetic trial for the sweeper's tests: no training, the same contract as a train.py job.

Reads ``x`` (and optional ``y``, ``duration``) from the job's overrides; each epoch's value rises
towards ``1 - (x - 0.3)**2 - y**2`` (seeds add ±0.01 noise); it reports to the study like the
Trainer does and stops early once a value reaches ``early_stop`` (when given).
"""

from __future__ import annotations

import math
import time

from hydrarl.status import Status
from hydrarl.sweep.reporter import TrialReporter
from hydrarl.sweep.trials import TrialJob
from hydrarl.training.jobs import JobOutcome

CALLS: list[dict] = []  # start/end times and overrides, for tests that look at scheduling


def parse(overrides: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides)


def synthetic(job: TrialJob, early_stop: float | None = None, crash_above: float | None = None,
              nan_below: float | None = None, duration: float = 0.0, stop_file=None) -> JobOutcome:
    start = time.perf_counter()
    p = parse(job.overrides)
    x, y, seed = float(p["x"]), float(p.get("y", 0.0)), int(p["seed"])
    n_epochs = int(p["trainer.n_epochs"])
    if "trainer.epoch_cap" in p:  # as the Trainer does: the cap ends the run sooner
        n_epochs = min(n_epochs, int(p["trainer.epoch_cap"]))
    call = {"start": time.time(), "number": job.number, "overrides": job.overrides}
    CALLS.append(call)
    time.sleep(float(p.get("duration", duration)))
    if crash_above is not None and x > crash_above:
        return JobOutcome(None, 1, time.perf_counter() - start, job.run_dir, error="RuntimeError: deliberate crash")
    target = 1 - (x - 0.3) ** 2 - y**2 + 0.01 * ((seed % 3) - 1)
    reporter = TrialReporter(**{k: job.trial_cfg[k] for k in ("storage", "study_name", "trial_id", "report")})
    status, value, epoch = Status.COMPLETED, None, 0
    for epoch in range(1, n_epochs + 1):
        value = target * (1 - 0.5**epoch)
        if reporter.report(value, epoch):
            status = Status.PRUNED
            break
        if early_stop is not None and value >= early_stop:
            status = Status.EARLY_STOPPED
            break
    if nan_below is not None and x < nan_below:
        value = math.nan
    call["end"] = time.time()
    if stop_file is not None and job.number >= 2 and stop_file.exists():
        stop_file.unlink()
    result = {"score": value, "epochs_run": epoch, "early_stopped": status == Status.EARLY_STOPPED, "status": status,
              "run_id": None, "metrics": {"final": value}, "num_timesteps": 100 * epoch, "run_dir": str(job.run_dir)}
    return JobOutcome(result, 0, time.perf_counter() - start, job.run_dir)


def conditional_space(trial) -> dict:
    """A conditional space for tests: ``y`` exists only when ``x > 0.5``."""
    if trial.params["x"] > 0.5:
        return {"y": trial.suggest_float("y", -0.2, 0.2)}
    return {}


def broken_space(trial) -> dict:
    """A conditional space with a bug for half the trials."""
    if trial.params["x"] > 0.5:
        raise ValueError("bug in the user's search-space hook")
    return {}
