"""Experiment trackers behind one small interface (:class:`Tracker`).

``make_trackers(cfg.logger, run_dir)`` builds the enabled ones; each imports its library only
when built, inside the process that runs the job.
"""

from hydrarl.trackers.base import RunRecord, Tracker, Trackers, make_trackers

__all__ = ["RunRecord", "Tracker", "Trackers", "make_trackers"]
