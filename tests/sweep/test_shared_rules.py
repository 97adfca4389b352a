"""The rules that let several sweepers share one study (hydrarl.sweep.shared), on a real Optuna study in a sqlite
file: which trials count towards n_trials, which one is surplus, that a trial whose heartbeat stops is failed and
retried with its parameters, that a retried failure is not reported as a failure, and that a re-run adopts only
the trials of its own sweep dir."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from hydrarl.errors import UserError
from hydrarl.sweep import shared
from hydrarl.sweep.components import open_storage
from hydrarl.sweep.runner import SweepRunner
from hydrarl.sweep.settings import RLOptunaSweeperConf
from hydrarl.sweep.trials import failed_trials
from tests.helpers.sweep_objective import synthetic

SPACE = {"x": optuna.distributions.FloatDistribution(0, 1)}


@pytest.fixture
def study(tmp_path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path}/study.db", heartbeat_seconds=1, grace_seconds=2)
    return optuna.create_study(study_name="s", storage=storage, direction="maximize")


def test_counting_skips_surplus_and_replaced_failures_and_ranks_a_retry_in_its_place(study):
    first = shared.ask(study, SPACE)                       # 0: dies, replaced by a retry
    study.tell(first, state=TrialState.FAIL)
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=first.params, distributions=SPACE,
                                              system_attrs={"failed_trial": 0, "retry_history": [0]}))  # 1
    assert shared.ask(study, SPACE).number == 1            # an ask runs a waiting retry first
    for _ in range(2):                                     # 2, 3
        shared.ask(study, SPACE)
    assert [t.number for t in shared.counting(study)] == [1, 2, 3]
    assert not shared.is_surplus(study, 3, total=3)        # the retry holds place 0: trial 3 is the third
    late = shared.ask(study, SPACE)                        # 4: a second process asked at the same moment
    assert shared.is_surplus(study, late.number, total=3)
    late.set_user_attr("stop_reason", shared.SURPLUS)
    study.tell(late, state=TrialState.FAIL)
    assert [t.number for t in shared.counting(study)] == [1, 2, 3]


def test_a_silent_trial_is_failed_and_retried_with_its_parameters(study):
    beat = shared.Heartbeat(study._storage)
    trial = shared.ask(study, SPACE)
    beat.add(trial._trial_id)                              # one heartbeat, then silence: its process died
    shared.fail_stale(study)
    assert study.trials[0].state == TrialState.RUNNING     # within the grace period
    time.sleep(3.5)                                        # the store's clock counts whole seconds
    shared.fail_stale(study)
    dead, retry = study.trials
    assert (dead.state, retry.state) == (TrialState.FAIL, TrialState.WAITING)
    assert retry.params == dead.params and retry.system_attrs[shared.RETRY_ATTR] == dead.number
    assert failed_trials(study) == []                      # a replaced failure is not the search's failure
    again = shared.ask(study, SPACE)                       # the next ask of any process runs the retry
    assert again.number == retry.number and again.params == dead.params


def test_a_beating_trial_stays_running(study):
    trial = shared.ask(study, SPACE)
    with shared.Heartbeat(study._storage) as beat:
        beat.add(trial._trial_id)
        time.sleep(3.5)                                    # past the grace period, beating every second
        shared.fail_stale(study)
    assert study.trials[0].state == TrialState.RUNNING


def test_a_rerun_adopts_only_its_own_sweep_dirs_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    settings = RLOptunaSweeperConf(storage=url, n_trials=3, params={"x": "interval(0,1)"}, heartbeat_seconds=None)

    def runner(name: str) -> SweepRunner:
        return SweepRunner(settings, synthetic, sweep_dir=tmp_path / name, study_name="s", n_epochs=2)

    mine, theirs = runner("mine"), runner("theirs")
    study = mine.open_study()
    for owner in (mine, theirs):                           # each left a trial RUNNING
        shared.ask(study, SPACE).set_user_attr(shared.OWNER_ATTR, owner.owner)
    rerun = runner("mine")
    rerun.open_study()
    assert [trial.number for trial, _ in rerun.adopted] == [0]
    assert [t.number for t in shared.others_running(study, rerun.owner)] == [1]


@pytest.mark.parametrize(("key", "value"), [("heartbeat_seconds", 0), ("grace_seconds", -1), ("stale_retries", -1),
                                            ("grace_seconds", 20)])
def test_bad_heartbeat_settings_are_refused(key, value):
    with pytest.raises(UserError, match=f"hydra.sweeper.{key}="):
        RLOptunaSweeperConf(params={"x": "interval(0,1)"}, **{key: value}).validate()
