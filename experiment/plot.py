"""Learning curves from MLflow runs, aggregated across seeds: python experiment/plot.py [--experiment NAME ...] [--agg iqm] ...

See `python experiment/plot.py --help` and src/analysis/plot.py (hydrarl.analysis.plot).
"""

import sys

import hydrarl  # noqa: F401  (sets privacy defaults before the tracking libraries import)
from hydrarl.analysis.plot import main

if __name__ == "__main__":
    sys.exit(main())
