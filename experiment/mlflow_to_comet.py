"""Copy recorded MLflow runs into Comet (or offline archives): python experiment/mlflow_to_comet.py --experiment FetchReach [--offline DIR]

`--help` lists the run-selection options (experiment, env, algorithm, tag, run id, status).
"""

import sys

import hydrarl  # noqa: F401  (sets privacy defaults before the tracking libraries import)
from hydrarl.analysis.mlflow_to_comet import main

if __name__ == "__main__":
    sys.exit(main())
