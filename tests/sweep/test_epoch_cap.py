"""The sweep's epoch cap stops a trial earlier without changing its configuration: a capped trial's
learning rate and exploration rate at each env step are those of the uncapped run (real DQN runs, seconds)."""

import json
import time

import optuna
import pytest

from hydrarl.config import merge_overrides
from hydrarl.errors import UserError
from hydrarl.sweep.runner import EPOCH_CAP_ATTR, SweepRunner
from hydrarl.sweep.settings import RLOptunaSweeperConf
from hydrarl.training.jobs import JobOutcome
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg

EPOCH_STEPS = 200
# DQN on CartPole, 4 epochs of 200 env steps; a linear learning-rate schedule 1e-3 -> 0 and epsilon
# 1 -> 0.05 over the whole run, so each epoch's values tell how long the run thinks it is.
BASE = ["env=CartPole", "algorithm=dqn", "logger=[]", "trainer.progress_bar=false", "trainer.n_epochs=4",
        f"trainer.eval_after_n_steps={EPOCH_STEPS}", "trainer.n_test_rollouts=1", "algorithm.learning_starts=50",
        "algorithm.exploration_fraction=1.0",
        "algorithm.learning_rate={_target_:stable_baselines3.common.utils.LinearSchedule,start:0.001,end:0.0,end_fraction:1.0}"]
SCHEDULED = ("train/learning_rate", "rollout/exploration_rate")


def history(run_dir):
    return json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())["history"]


def in_process(job) -> JobOutcome:
    """A trial job run in this process, its result as train.py's trial_result.json would hold it."""
    start = time.perf_counter()
    result = run(compose_cfg(merge_overrides(BASE, job.overrides)), job.run_dir)
    return JobOutcome(json.loads(json.dumps(result.to_dict())), 0, time.perf_counter() - start, job.run_dir)


def test_a_capped_trial_keeps_the_schedules_of_the_uncapped_run(tmp_path):
    uncapped = run(compose_cfg([*BASE, "seed=0"]), tmp_path / "uncapped")
    assert (uncapped.epochs_run, uncapped.num_timesteps) == (4, 4 * EPOCH_STEPS)
    full = history(tmp_path / "uncapped")
    # The schedule spans the run: after epoch 1 of 4, 3/4 of the learning rate is left (not 1/2 as over 2 epochs).
    assert full[0]["train/learning_rate"] == pytest.approx(0.001 * 0.75, rel=0.03)

    settings = RLOptunaSweeperConf(params={"algorithm.gamma": "choice(0.99)"}, n_trials=1, sampler={"name": "random", "seed": 0},
                                   pruner={"name": "none"}, seed=0)
    runner = SweepRunner(settings, in_process, sweep_dir=tmp_path / "search", study_name="cap", n_epochs=4)
    study = runner.open_study()
    study.set_user_attr(EPOCH_CAP_ATTR, 2)  # as if an earlier trial had early-stopped after 1 epoch (factor 1.5)
    trial = runner.run(study).trials[0]

    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert (trial.user_attrs["epochs_run"], trial.user_attrs["stop_reason"]) == (2, "completed")
    assert {"trainer.n_epochs=4", "trainer.epoch_cap=2"} <= set(trial.user_attrs["overrides"])
    capped = history(tmp_path / "search" / "trial_0000")
    assert len(capped) == 2
    for epoch, (a, b) in enumerate(zip(capped, full[:2], strict=False), start=1):
        assert a["time/total_timesteps"] == b["time/total_timesteps"] == epoch * EPOCH_STEPS
        for key in SCHEDULED:
            assert a[key] == pytest.approx(b[key]), f"{key} after epoch {epoch}"


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_epoch_cap_must_be_null_or_a_positive_integer(value):
    with pytest.raises(UserError, match="trainer.epoch_cap"):
        compose_cfg(["env=CartPole", "algorithm=dqn", f"trainer.epoch_cap={value}"])
