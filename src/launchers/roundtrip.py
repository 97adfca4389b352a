"""Save -> load -> predict round trip of a finished run: ``python -m hydrarl.launchers.roundtrip <run dir>``.

``python -m hydrarl.launchers.roundtrip --train <train.py overrides> hydra.run.dir=<dir>`` first runs
that training in this process (exactly ``experiment/train.py <overrides>``) and then the round trip:
the function tier's job, one Python start-up instead of two (imports are most of a short job's time).

Loads ``checkpoints/last/model.zip`` with the class the run's config names, saves it again, loads
that copy, and checks that both predict the same valid action for the same observations from the
run's env (a recurrent policy carrying its state from step to step). With ``--train`` it first checks
the run's TrialResult: completed, every epoch run, every env step taken, a finite evaluation. Exit status 0 on success, 1 with a message otherwise.

Under ``run_testing -t function`` (``$HYDRARL_FORKSERVER`` set) a ``--train`` job runs in a child of the
tier's fork server, which has the heavy modules imported already (``hydrarl.launchers.forkserver``); so
this module imports them only when it runs a job itself.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import hydrarl  # noqa: F401  (privacy defaults)
from hydrarl.errors import exit_now_on_user_error
from hydrarl.status import Status


def roundtrip(run_dir: Path) -> None:
    import numpy as np
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from hydrarl.envs.factory import make_vec_env
    from hydrarl.training.checkpoint import MODEL, load_normalization

    cfg = OmegaConf.load(run_dir / "config.yaml")
    cls = get_class(cfg.algorithm._target_)
    last = run_dir / "checkpoints" / "last"
    env = load_normalization(last, make_vec_env(cfg.env, seed=123, training=False))
    model = cls.load(last / MODEL, env=env, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / MODEL)
        copy = cls.load(Path(tmp) / MODEL, env=env, device="cpu")
    obs = env.reset()
    state = state_again = None  # a recurrent policy's memory, carried from step to step
    starts = np.ones(env.num_envs, dtype=bool)
    for _ in range(5):
        action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        again, state_again = copy.predict(obs, state=state_again, episode_start=starts, deterministic=True)
        if not np.array_equal(action, again):
            raise SystemExit(f"round trip changed the policy: {action} != {again}")
        if not all(env.action_space.contains(a) for a in action):
            raise SystemExit(f"predicted action {action} is not in {env.action_space}")
        obs, _, starts, _ = env.step(action)
    env.close()
    print(f"round trip ok: {cls.__name__} from {last / MODEL}")


def check_result(run_dir: Path) -> None:
    """The run's TrialResult: completed, every epoch its config asks for, at least that many env steps,
    and a finite evaluation (when it evaluates). SystemExit with what is wrong otherwise."""
    from omegaconf import OmegaConf

    from hydrarl.training.result import read_result
    from hydrarl.training.trainer import last_epoch

    trainer = OmegaConf.load(run_dir / "config.yaml").trainer
    result = read_result(run_dir)
    if result is None:
        raise SystemExit(f"the run left no TrialResult in {run_dir}")
    epochs = last_epoch(trainer)
    if result["status"] != Status.COMPLETED or result["epochs_run"] != epochs:
        raise SystemExit(f"the run ended {result['status']} after {result['epochs_run']} epoch(s); expected completed after {epochs}")
    if result["num_timesteps"] < epochs * trainer.eval_after_n_steps:
        raise SystemExit(f"the run took {result['num_timesteps']} env steps, fewer than {epochs} x {trainer.eval_after_n_steps}")
    reward = result["metrics"].get("eval/mean_reward")
    if trainer.n_test_rollouts and not (isinstance(reward, int | float) and math.isfinite(reward)):
        raise SystemExit(f"the run's eval/mean_reward is {reward!r}, not a finite number")
    print(f"result ok: {result['status']}, {result['epochs_run']} epoch(s), {result['num_timesteps']} env steps")


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
    check_result(Path(run_dirs[-1]))
    roundtrip(Path(run_dirs[-1]))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--train"]:
        from hydrarl.launchers.forkserver import delegate

        delegated = delegate(sys.argv[1:])  # None: no fork server, run here
        if delegated is not None:
            sys.exit(delegated)
    with exit_now_on_user_error():
        if sys.argv[1:2] == ["--train"]:
            sys.exit(train_then_roundtrip(sys.argv[2:]))
        roundtrip(Path(sys.argv[1]))
