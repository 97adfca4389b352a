"""Train one agent, or sweep many: python experiment/train.py env=<env> algorithm=<algorithm> [key=value ...]

See docs/running.md for the config keys; `--help` lists the config groups.
"""

import hydrarl  # noqa: F401  (sets privacy defaults before the tracking libraries import)
from hydrarl.launchers.cli import main

if __name__ == "__main__":
    main()
