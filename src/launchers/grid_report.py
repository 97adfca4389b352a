"""The outcome of a grid multirun (``--multirun a=1,2 b=x,y``): exit status 1 when any job failed.

Hydra's launchers run every job even when some fail (``task`` returns a failure instead of raising), but
Hydra itself exits 0 whatever the jobs did, so a script chaining a grid with the next step could not tell.
Each failed job appends ``<job>\\t<why it failed>`` to ``<sweep dir>/failed_jobs.txt`` (appends from
parallel joblib workers are whole lines); :class:`GridReport`, a Hydra callback in ``conf/main.yaml``, clears
that file when the multirun starts and, when it ends, prints the failures to stderr and exits 1. Every job
that could run has run and is recorded by then. The ``rl_optuna`` sweeper's trials are separate processes
that never write the file: a failed trial is part of a search, not a failure of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hydrarl.training.jobs import failure_reason

FAILED_FILE = "failed_jobs.txt"


def record_failure(sweep_dir: str | Path, job: str, error: str) -> None:
    """Append one failed job (its sweep subdir name and the one line that says why, as
    :func:`hydrarl.training.jobs.failure_reason` finds it: a one-line message as it is, of a traceback the
    exception line) to the sweep's list."""
    last = failure_reason(str(error)).strip()
    path = Path(sweep_dir) / FAILED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        out.write(f"{job}\t{last}\n")


class GridReport(Callback):
    """Clears the failure list at the start of a multirun; reports it and exits 1 at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        (Path(config.hydra.sweep.dir) / FAILED_FILE).unlink(missing_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        path = Path(config.hydra.sweep.dir) / FAILED_FILE
        if not path.exists():
            return
        failed = [line.split("\t", 1) for line in path.read_text().splitlines() if line]
        print(f"error: {len(failed)} job(s) of this multirun failed (the others ran to the end and are recorded):",
              file=sys.stderr)
        for job, error in failed:
            print(f"  {job}: {error}", file=sys.stderr)
        print(f"(list in {path}; each job's log is <job>/train.log)", file=sys.stderr)
        sys.exit(1)
