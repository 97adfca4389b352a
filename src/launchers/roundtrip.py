"""Save -> load -> predict round trip of a finished run: ``python -m hydrarl.launchers.roundtrip <run dir>``.

``python -m hydrarl.launchers.roundtrip --train <train.py overrides> hydra.run.dir=<dir>`` first runs
that training in this process (exactly ``experiment/train.py <overrides>``) and then the round trip:
the function tier's job, one Python start-up instead of two (imports are most of a short job's time).

Loads ``checkpoints/last/model.zip`` with the class the run's config names, saves it again, loads
that copy, and checks that both predict the same valid action for the same observations from the
run's env. Exit status 0 on success, 1 with a message otherwise.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from hydra.utils import get_class
from omegaconf import OmegaConf

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.envs.factory import make_vec_env
from hydrarl.training.checkpoint import MODEL, load_normalization


def roundtrip(run_dir: Path) -> None:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cls = get_class(cfg.algorithm._target_)
    last = run_dir / "checkpoints" / "last"
    env = load_normalization(last, make_vec_env(cfg.env, seed=123, training=False))
    model = cls.load(last / MODEL, env=env, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / MODEL)
        copy = cls.load(Path(tmp) / MODEL, env=env, device="cpu")
    obs = env.reset()
    for _ in range(5):
        action, _ = model.predict(obs, deterministic=True)
        again, _ = copy.predict(obs, deterministic=True)
        if not np.array_equal(action, again):
            raise SystemExit(f"round trip changed the policy: {action} != {again}")
        if not all(env.action_space.contains(a) for a in action):
            raise SystemExit(f"predicted action {action} is not in {env.action_space}")
        obs, *_ = env.step(action)
    env.close()
    print(f"round trip ok: {cls.__name__} from {last / MODEL}")


def train_then_roundtrip(train_args: list[str]) -> int:
    """``experiment/train.py <train_args>`` in this process, then :func:`roundtrip` of its run directory
    (the ``hydra.run.dir=`` override, which ``train_args`` must hold). Returns the exit status."""
    from hydrarl.launchers.cli import main as train_main
    from hydrarl.paths import TRAIN_SCRIPT

    run_dirs = [a.split("=", 1)[1] for a in train_args if a.startswith("hydra.run.dir=")]
    if not run_dirs:
        raise SystemExit("--train needs a hydra.run.dir=<dir> override")
    sys.argv = [str(TRAIN_SCRIPT), *train_args]
    try:
        train_main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            return exc.code if isinstance(exc.code, int) else 1
    roundtrip(Path(run_dirs[-1]))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--train"]:
        sys.exit(train_then_roundtrip(sys.argv[2:]))
    roundtrip(Path(sys.argv[1]))
