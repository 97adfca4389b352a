"""The real config tree, composed as ``experiment/train.py`` would."""

from __future__ import annotations

from hydrarl.config.compose import compose
from hydrarl.launchers.pairs import algorithm_fast_overrides

compose_cfg = compose  # conf/main.yaml composed as experiment/train.py would, HydraConfig set


def fast_overrides(algorithm: str) -> list[str]:
    """Overrides that shrink an algorithm's warm-up and batch sizes (only keys its config has)."""
    return list(algorithm_fast_overrides(algorithm))
