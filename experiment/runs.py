"""Upkeep of the MLflow store: python experiment/runs.py close-stale [--tracking-uri URI] [--under DIR], or links [--tracking-uri URI].

See `python experiment/runs.py close-stale --help` and src/analysis/maintenance.py (hydrarl.analysis.maintenance).
"""

import sys

import hydrarl  # noqa: F401  (sets privacy defaults before the tracking libraries import)
from hydrarl.analysis.maintenance import main

if __name__ == "__main__":
    sys.exit(main())
