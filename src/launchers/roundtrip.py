"""Save -> load -> predict round trip of a finished run: ``python -m hydrarl.launchers.roundtrip <run dir>``.

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
from hydrarl.launchers.checkpoint import MODEL, load_normalization


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


if __name__ == "__main__":
    roundtrip(Path(sys.argv[1]))
