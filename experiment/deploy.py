"""Drive the PenguinPi (or its simulator) with a saved model: python experiment/deploy.py [MODEL] [episodes=N] [env.<key>=...]

The settings are listed in hydrarl.analysis.deploy (docs/offline.md, section Deploying).
"""

import sys

import hydrarl  # noqa: F401  (sets privacy defaults before the tracking libraries import)
from hydrarl.analysis.deploy import main

if __name__ == "__main__":
    sys.exit(main())
