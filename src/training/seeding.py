"""Seeds and the random-number-generator state a checkpoint carries."""

from __future__ import annotations

import random
import secrets
from typing import Any

import numpy as np
import torch

EVAL_SEED_OFFSET = 1_000_003  # evaluation env seeds live far from the training env's


def draw_seed() -> int:
    """A fresh seed for a run started without one (recorded with the run)."""
    return secrets.randbelow(2**31 - 1)


def rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy and torch (CPU and, if present, CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
