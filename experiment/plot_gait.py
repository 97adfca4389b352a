"""Plot one Cassie episode: python experiment/plot_gait.py [RUN_DIR|MODEL_ZIP] [render=record] [--speed V] [--seed N]

`--help` lists the options; the logic is in hydrarl.analysis.gait.
"""

import sys

import hydrarl  # noqa: F401  (sets privacy and rendering defaults before the libraries import)
from hydrarl.analysis.gait import main

if __name__ == "__main__":
    sys.exit(main())
