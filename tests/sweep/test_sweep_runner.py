"""The search loop on a synthetic objective (seconds): samplers, pruning, the epoch cap, stop
conditions, failure isolation, resume after SIGKILL, repeats, multi-objective, no batch barrier."""

import functools
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from hydrarl.analysis.curves import iqm
from hydrarl.errors import UserError
from hydrarl.paths import PROJECT_ROOT
from hydrarl.sweep.runner import EPOCH_CAP_ATTR, STOP_FILE, SweepRunner, SweepSettings
from tests.helpers import sweep_objective
from tests.helpers.sweep_objective import synthetic

SPACE = {"x": "interval(0.0, 1.0)"}


def settings(tmp_path, **kw):
    base = dict(sweep_dir=tmp_path, study_name="s", params=SPACE, n_trials=8, n_jobs=2, n_epochs=4,
                sampler={"name": "random", "seed": 0}, pruner={"name": "none"})
    return SweepSettings(**{**base, **kw})


def states(study):
    return [t.state for t in study.trials]


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "gp", "qmc"])
def test_each_single_objective_sampler_runs_the_study(tmp_path, name):
    s = settings(tmp_path, sampler={"name": name, "seed": 1}, params={"x": "interval(0.0, 1.0)", "y": "interval(-0.5, 0.5)"}, n_trials=10)
    study = SweepRunner(s, synthetic).run()
    assert states(study) == [TrialState.COMPLETE] * 10
    assert study.best_value > 0.6


def test_grid_sampler_walks_the_grid(tmp_path):
    s = settings(tmp_path, sampler={"name": "grid"}, params={"x": "choice(0.1, 0.3, 0.5)", "y": "range(0, 2)"}, n_trials=6)
    study = SweepRunner(s, synthetic).run()
    assert sorted((t.params["x"], t.params["y"]) for t in study.trials) == sorted((x, y) for x in (0.1, 0.3, 0.5) for y in (0, 1))
    assert study.best_params == {"x": 0.3, "y": 0}


def test_grid_sampler_refuses_intervals(tmp_path):
    with pytest.raises(UserError, match="grid"):
        SweepRunner(settings(tmp_path, sampler={"name": "grid"}), synthetic).run()


def test_sampler_by_target(tmp_path):
    s = settings(tmp_path, sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 3}, n_trials=3)
    study = SweepRunner(s, synthetic).run()
    assert isinstance(study.sampler, optuna.samplers.RandomSampler) and len(study.trials) == 3


def test_multi_objective_gives_a_pareto_front(tmp_path):
    s = settings(tmp_path, sampler={"name": "nsgaii", "seed": 0}, direction=["maximize", "minimize"], objectives=["score", "num_timesteps"],
                 n_trials=10)
    runner = SweepRunner(s, functools.partial(synthetic, early_stop=0.7))
    study = runner.run()
    front = study.best_trials
    assert front and all(t.state == TrialState.COMPLETE for t in front)
    for a in front:  # no trial of the front is dominated by another
        assert not any(b.values[0] >= a.values[0] and b.values[1] <= a.values[1] and b.values != a.values for b in study.trials if b.values)


def test_median_pruner_prunes_hopeless_trials(tmp_path):
    s = settings(tmp_path, pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}, n_trials=16, n_jobs=1,
                 sampler={"name": "random", "seed": 2})
    study = SweepRunner(s, synthetic).run()
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "some trials must be pruned"
    assert all(t.user_attrs["stop_reason"] == "pruned" and t.user_attrs["epochs_run"] < 4 for t in pruned)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert max(t.value for t in complete) > max(t.intermediate_values[max(t.intermediate_values)] for t in pruned)


@pytest.mark.parametrize("name", ["hyperband", "successive_halving", "wilcoxon"])
def test_other_pruners_build(tmp_path, name):
    study = SweepRunner(settings(tmp_path, pruner={"name": name}, n_trials=4), synthetic).run()
    assert len(study.trials) == 4


def test_epoch_cap_is_factor_times_fastest_early_stop(tmp_path):
    sweep_objective.CALLS.clear()
    s = settings(tmp_path, n_epochs=20, n_jobs=1, n_trials=6, epoch_cap_factor=1.5)
    study = SweepRunner(s, functools.partial(synthetic, early_stop=0.6)).run()
    early = [t.user_attrs["epochs_run"] for t in study.trials if t.user_attrs["stop_reason"] == "early_stopped"]
    assert early
    cap = study.user_attrs[EPOCH_CAP_ATTR]
    assert cap == int(-(-1.5 * min(early) // 1))
    first_early = next(t.number for t in study.trials if t.user_attrs["stop_reason"] == "early_stopped")
    given = [int(sweep_objective.parse(c["overrides"])["trainer.n_epochs"]) for c in sweep_objective.CALLS]
    assert given[: first_early + 1] == [20] * (first_early + 1)
    assert all(n <= 20 for n in given) and given[-1] == cap


def test_cap_persists_in_the_study(tmp_path):
    s = settings(tmp_path, n_epochs=20, n_jobs=1, n_trials=3, storage=f"sqlite:///{tmp_path}/s.db")
    SweepRunner(s, functools.partial(synthetic, early_stop=0.6)).run()
    again = SweepRunner(settings(tmp_path, n_epochs=20, n_trials=3, storage=f"sqlite:///{tmp_path}/s.db"), synthetic)
    assert again.epoch_cap(again.open_study()) < 20


def test_deleting_the_stop_file_lets_running_trials_finish_and_starts_no_more(tmp_path):
    runner = SweepRunner(settings(tmp_path, n_trials=30, n_jobs=2), functools.partial(synthetic, duration=0.05, stop_file=tmp_path / STOP_FILE))
    study = runner.run()
    assert 3 <= len(study.trials) <= 5
    assert all(t.state.is_finished() for t in study.trials)


def test_max_duration_stops_the_search(tmp_path):
    start = time.time()
    study = SweepRunner(settings(tmp_path, n_trials=1000, max_duration_minutes=0.01), functools.partial(synthetic, duration=0.1)).run()
    assert time.time() - start < 5 and 2 <= len(study.trials) < 30


def test_a_crashing_or_nan_trial_fails_alone(tmp_path):
    s = settings(tmp_path, n_trials=12, sampler={"name": "random", "seed": 5})
    study = SweepRunner(s, functools.partial(synthetic, crash_above=0.75, nan_below=0.1)).run()
    assert len(study.trials) == 12
    for t in study.trials:
        bad = t.params["x"] > 0.75 or t.params["x"] < 0.1
        assert (t.state == TrialState.FAIL) == bad
        if t.params["x"] > 0.75:
            assert "deliberate crash" in t.user_attrs["error"]
    assert any(t.state == TrialState.COMPLETE for t in study.trials)


def test_max_failure_rate_stops_a_broken_search(tmp_path):
    s = settings(tmp_path, n_trials=40, n_jobs=1, max_failure_rate=0.5)
    study = SweepRunner(s, functools.partial(synthetic, crash_above=-1)).run()
    assert len(study.trials) == 4


def test_repeats_aggregate_seeds_and_keep_them(tmp_path):
    for aggregate in ("mean", "iqm"):
        s = settings(tmp_path / aggregate, n_trials=2, repeats=4, aggregate=aggregate, n_epochs=30)
        study = SweepRunner(s, synthetic).run()
        for t in study.trials:
            per_seed = t.user_attrs["per_seed/score"]
            assert len(per_seed) == 4 and len(set(per_seed)) > 1
            expected = float(iqm(per_seed)) if aggregate == "iqm" else sum(per_seed) / 4
            assert t.value == pytest.approx(expected)


def test_top_k_are_reevaluated_with_fresh_seeds(tmp_path):
    study = SweepRunner(settings(tmp_path, n_trials=4, reevaluate_top_k=2, reevaluate_repeats=3), synthetic).run()
    scores = {int(k.split("/")[1]): v for k, v in study.user_attrs.items() if k.startswith("reevaluation/")}
    assert len(scores) == 2 and all(len(v) == 3 for v in scores.values())
    reevaluated = [t for t in study.trials if t.number in scores]
    assert min(t.value for t in reevaluated) >= max(t.value for t in study.trials if t not in reevaluated)


def test_no_batch_barrier_a_free_worker_starts_the_next_trial(tmp_path):
    def durations(asynchronous):
        sweep_objective.CALLS.clear()
        s = settings(tmp_path / str(asynchronous), n_trials=4, n_jobs=2, asynchronous=asynchronous,
                     sampler={"name": "random", "seed": 0})
        runner = SweepRunner(s, lambda job: synthetic(job, duration=0.6 if job.number == 0 else 0.05))
        runner.run()
        return {c["number"]: c for c in sweep_objective.CALLS}, runner.utilization

    calls, busy = durations(True)
    assert calls[2]["start"] < calls[0]["end"] and calls[3]["start"] < calls[0]["end"]
    assert busy > 0.5
    calls, busy_barrier = durations(False)
    assert calls[1]["start"] < calls[0]["end"]  # a batch of n_jobs starts together ...
    assert calls[2]["start"] >= calls[0]["end"]  # ... and the next waits for all of it
    assert busy_barrier < busy


RESUMABLE = """
import functools, logging, sys
from pathlib import Path
from hydrarl.sweep.runner import SweepRunner, SweepSettings
from tests.helpers.sweep_objective import synthetic
logging.basicConfig(level=logging.INFO)
s = SweepSettings(sweep_dir=Path(sys.argv[1]), study_name="k", params={"x": "interval(0.0, 1.0)"}, n_trials=8, n_jobs=2,
                  n_epochs=3, sampler={"name": "random", "seed": 0}, pruner={"name": "none"})
SweepRunner(s, functools.partial(synthetic, duration=0.4)).run()
"""


def test_resume_after_sigkill_keeps_completed_trials_and_honours_the_total(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", RESUMABLE, str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "trial 2:" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna_journal.log")))
    before = {t.number: t.value for t in optuna.load_study(study_name="k", storage=storage).trials if t.state == TrialState.COMPLETE}
    assert before
    done = subprocess.run([sys.executable, "-c", RESUMABLE, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="k", storage=storage)
    after = {t.number: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    assert all(after[n] == v for n, v in before.items())
    abandoned = [t for t in study.trials if t.user_attrs.get("hydrarl.abandoned")]
    counted = [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("hydrarl.abandoned")]
    assert len(counted) == 8 and all(t.state == TrialState.COMPLETE for t in counted)
    # Abandoned trials with parameters run again with them (one killed before sampling has none).
    assert {tuple(t.params.items()) for t in abandoned if t.params} <= {tuple(t.params.items()) for t in counted}


def test_custom_search_space_hook_adds_conditional_parameters(tmp_path):
    sweep_objective.CALLS.clear()
    s = settings(tmp_path, n_trials=10, custom_search_space="tests.helpers.sweep_objective.conditional_space")
    study = SweepRunner(s, synthetic).run()
    for t in study.trials:
        assert ("y" in t.params) == (t.params["x"] > 0.5)
    with_y = [c for c in sweep_objective.CALLS if "y" in sweep_objective.parse(c["overrides"])]
    assert len(with_y) == sum("y" in t.params for t in study.trials)


def test_unknown_custom_search_space_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="custom_search_space"):
        SweepRunner(settings(tmp_path, custom_search_space="tests.nowhere.space"), synthetic)


def test_results_files_for_one_and_for_several_objectives(tmp_path):
    import yaml

    from hydrarl.sweep.results import write_results

    s = settings(tmp_path / "one", n_trials=5)
    runner = SweepRunner(s, synthetic)
    study = runner.run()
    write_results(study, s, ["+search=X/y", "seed=9"], runner.storage, runner.utilization)
    summary = yaml.safe_load((tmp_path / "one" / "optimization_results.yaml").read_text())
    assert summary["best_value"] == study.best_value and summary["best_params"] == study.best_params
    line = (tmp_path / "one" / "best_overrides.txt").read_text().split()
    assert line[0] == "+search=X/y" and f"x={study.best_params['x']!r}" in line and line.count("seed=0") == 1
    assert "seed=9" not in line  # the trial's own seed replaces the base one
    assert (tmp_path / "one" / "plots" / "history.png").exists()

    m = settings(tmp_path / "two", n_trials=6, direction=["maximize", "minimize"], objectives=["score", "num_timesteps"],
                 sampler={"name": "nsgaii", "seed": 0})
    runner = SweepRunner(m, functools.partial(synthetic, early_stop=0.6))
    study = runner.run()
    write_results(study, m, [], runner.storage)
    summary = yaml.safe_load((tmp_path / "two" / "optimization_results.yaml").read_text())
    assert {t["number"] for t in summary["pareto_front"]} == {t.number for t in study.best_trials}
    assert (tmp_path / "two" / "plots" / "pareto_front.png").exists()


def test_pruner_none_ignores_a_presets_pruner_settings_and_bad_settings_are_user_errors(tmp_path):
    study = SweepRunner(settings(tmp_path / "a", pruner={"name": "none", "n_startup_trials": 4}, n_trials=2), synthetic).run()
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    with pytest.raises(UserError, match="MedianPruner"):
        SweepRunner(settings(tmp_path / "b", pruner={"name": "median", "bogus": 1}), synthetic).run()
    with pytest.raises(UserError, match="RandomSampler"):
        SweepRunner(settings(tmp_path / "c", sampler={"name": "random", "bogus": 1}), synthetic).run()


def test_a_raising_search_space_hook_fails_that_trial_only(tmp_path):
    s = settings(tmp_path, n_trials=8, custom_search_space="tests.helpers.sweep_objective.broken_space")
    study = SweepRunner(s, synthetic).run()
    assert len(study.trials) == 8
    for t in study.trials:
        assert (t.state == TrialState.FAIL) == (t.params["x"] > 0.5)
