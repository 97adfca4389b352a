"""Steer a trained Cassie policy in MuJoCo's viewer: python experiment/play.py RUN_DIR|MODEL_ZIP [--controller ...]

`--help` lists the options and keys; the logic is in hydrarl.analysis.play.
"""

import sys

import hydrarl  # noqa: F401  (sets privacy and rendering defaults before the libraries import)
from hydrarl.analysis.play import main

if __name__ == "__main__":
    sys.exit(main())
