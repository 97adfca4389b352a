"""Compare agents over many episodes: python experiment/evaluate.py RUN_DIR|MODEL_ZIP ... [--controller Env/algo ...] [--episodes 50]

`--help` lists the options; the logic is in hydrarl.analysis.evaluate_agents.
"""

import sys

import hydrarl  # noqa: F401  (sets privacy defaults before the tracking libraries import)
from hydrarl.analysis.evaluate_agents import main

if __name__ == "__main__":
    sys.exit(main())
