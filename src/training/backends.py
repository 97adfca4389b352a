"""The process's compute settings for both backends, made before an agent is built: threads per job (one knob,
``trainer.torch_threads``, whatever the backend) and JAX's compilation cache.

torch takes its setting at any time. JAX (the ``sbx_*`` agents) reads its settings once, when it is first imported,
which happens only when a JAX agent's class is looked up: :func:`set_up_backends` runs before that and leaves them
in the environment (a setting already there is kept):

- with one thread, XLA's compiled CPU code runs single-threaded (``--xla_cpu_multi_thread_eigen=false``; JAX still
  overlaps Python with the computation on a second thread);
- on the CPU, JAX starts with its CPU platform only, without probing for accelerators;
- every compiled function is kept in a cache on disk (``JAX_CACHE_DIR``, at most ``JAX_CACHE_BYTES``, least
  recently used entries evicted), which the next run with the same shapes reads instead of compiling again: the
  default FetchReach run on JAX reaches its first env step in 3.7 s instead of 6.7 s, and its first updates at
  293 steps/s instead of 184. An entry left unreadable (a run killed while writing it) makes JAX warn and compile
  that function again; the run's results are the same.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

SINGLE_THREAD_XLA = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")
JAX_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hydrarl" / "jax"
JAX_CACHE_BYTES = 2**30


def set_up_backends(threads: int, device: str = "cpu") -> None:
    """Use ``threads`` compute threads in this process: torch's intra-op threads now, and JAX's settings (threads,
    platform, compilation cache) for when it is imported; no effect on JAX once it is (a process imports it at most
    once). ``device``: the resolved device."""
    torch.set_num_threads(threads)
    if "jax" in sys.modules:
        return
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "").split()
        os.environ["XLA_FLAGS"] = " ".join([*flags, *(f for f in SINGLE_THREAD_XLA if f not in flags)])
    if device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(JAX_CACHE_DIR))
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(JAX_CACHE_BYTES))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the many small ones add up to seconds
