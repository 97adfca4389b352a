"""Record episodes into an offline dataset: python experiment/collect.py env=PenguinPi collector=scripted episodes=50 dataset=runs/datasets/loop

The settings are listed in hydrarl.analysis.collect (docs/offline.md).
"""

import sys

import hydrarl  # noqa: F401  (sets privacy defaults before the tracking libraries import)
from hydrarl.analysis.collect import main

if __name__ == "__main__":
    sys.exit(main())
