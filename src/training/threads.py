"""Threads per job, one knob (``trainer.torch_threads``) whatever the agent's backend.

torch takes its setting at any time. JAX (the ``sbx_*`` agents) reads its settings once, when it is first imported,
which happens only when a JAX agent's class is looked up: :func:`limit_threads` runs before that and leaves them in
the environment. With one thread, XLA's compiled CPU code runs single-threaded (``--xla_cpu_multi_thread_eigen=false``;
JAX still overlaps Python with the computation on a second thread, as torch overlaps nothing). On the CPU, JAX
starts with its CPU platform only, without probing for accelerators.
"""

from __future__ import annotations

import os
import sys

import torch

SINGLE_THREAD_XLA = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")


def limit_threads(threads: int, device: str = "cpu") -> None:
    """Use ``threads`` compute threads in this process: torch's intra-op threads now, and JAX's settings for when
    it is imported (no effect once it is: a process imports it at most once). ``device``: the resolved device."""
    torch.set_num_threads(threads)
    if "jax" in sys.modules:
        return
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "").split()
        os.environ["XLA_FLAGS"] = " ".join([*flags, *(f for f in SINGLE_THREAD_XLA if f not in flags)])
    if device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
