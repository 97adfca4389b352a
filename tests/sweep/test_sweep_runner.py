"""The search loop on a synthetic objective (seconds): samplers, pruning, the epoch cap, stop
conditions, failure isolation and reasons, resume after SIGKILL (adoption), the sweep dir's lock, the
sampler's seed on resume, checks of settings and space, repeats, multi-objective, no batch barrier."""

import functools
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from hydrarl.errors import UserError
from hydrarl.paths import PROJECT_ROOT
from hydrarl.sweep.runner import EPOCH_CAP_ATTR, STOP_FILE, SweepRunner
from hydrarl.sweep.settings import RLOptunaSweeperConf
from hydrarl.sweep.shared import OWNER_ATTR
from hydrarl.sweep.trials import failed_trials
from hydrarl.training.jobs import failure_reason
from tests.helpers import sweep_objective
from tests.helpers.sweep_objective import synthetic

SPACE = {"x": "interval(0.0, 1.0)"}


def settings(**kw) -> RLOptunaSweeperConf:
    """The sweeper's settings of these tests: the schema's defaults, a 1-d space, random sampling, no pruning."""
    base = dict(params=SPACE, n_trials=8, n_jobs=2, sampler={"name": "random", "seed": 0}, pruner={"name": "none"})
    return RLOptunaSweeperConf(**{**base, **kw})


def runner(tmp_path, run_trial=synthetic, n_epochs=4, study_name="s", **kw) -> SweepRunner:
    """A runner of ``settings(**kw)`` with its sweep directory in ``tmp_path``."""
    return SweepRunner(settings(**kw), run_trial, sweep_dir=tmp_path, study_name=study_name, n_epochs=n_epochs)


def states(study):
    return [t.state for t in study.trials]


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "gp", "qmc"])
def test_each_single_objective_sampler_runs_the_study(tmp_path, name):
    study = runner(tmp_path, sampler={"name": name, "seed": 1}, params={"x": "interval(0.0, 1.0)", "y": "interval(-0.5, 0.5)"},
                   n_trials=10).run()
    assert states(study) == [TrialState.COMPLETE] * 10
    assert study.best_value > 0.6


def test_grid_sampler_walks_the_grid(tmp_path):
    study = runner(tmp_path, sampler={"name": "grid"}, params={"x": "choice(0.1, 0.3, 0.5)", "y": "range(0, 2)"}, n_trials=6).run()
    assert sorted((t.params["x"], t.params["y"]) for t in study.trials) == sorted((x, y) for x in (0.1, 0.3, 0.5) for y in (0, 1))
    assert study.best_params == {"x": 0.3, "y": 0}


def test_grid_sampler_refuses_intervals(tmp_path):
    with pytest.raises(UserError, match="grid"):
        runner(tmp_path, sampler={"name": "grid"}).run()


def test_sampler_by_target(tmp_path):
    study = runner(tmp_path, sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 3}, n_trials=3).run()
    assert isinstance(study.sampler, optuna.samplers.RandomSampler) and len(study.trials) == 3


def test_sampler_target_over_a_presets_named_sampler_drops_the_named_ones_settings(tmp_path):
    """``+hydra.sweeper.sampler._target_=...`` over a preset's ``{name: tpe, seed, n_startup_trials}``: the target
    keeps the seed it takes (the same draws as the bare target's) and not TPE's settings; a misspelt key stays an error."""
    preset = {"name": "tpe", "seed": 3, "n_startup_trials": 5, "multivariate": True}
    over = runner(tmp_path / "a", sampler={**preset, "_target_": "optuna.samplers.RandomSampler"}, n_trials=3).run()
    bare = runner(tmp_path / "b", sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 3}, n_trials=3).run()
    assert isinstance(over.sampler, optuna.samplers.RandomSampler)
    assert [t.params for t in over.trials] == [t.params for t in bare.trials]
    with pytest.raises(UserError, match="sampler._target_=optuna.samplers.RandomSampler cannot be built"):
        runner(tmp_path / "c", sampler={**preset, "_target_": "optuna.samplers.RandomSampler", "sed": 1})


def test_multi_objective_gives_a_pareto_front(tmp_path):
    study = runner(tmp_path, functools.partial(synthetic, early_stop=0.7), sampler={"name": "nsgaii", "seed": 0},
                   direction=["maximize", "minimize"], objectives=["score", "num_timesteps"], n_trials=10).run()
    front = study.best_trials
    assert front and all(t.state == TrialState.COMPLETE for t in front)
    for a in front:  # no trial of the front is dominated by another
        assert not any(b.values[0] >= a.values[0] and b.values[1] <= a.values[1] and b.values != a.values for b in study.trials if b.values)


def test_median_pruner_prunes_hopeless_trials(tmp_path):
    study = runner(tmp_path, pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}, n_trials=16, n_jobs=1,
                   sampler={"name": "random", "seed": 2}).run()
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "some trials must be pruned"
    assert all(t.user_attrs["stop_reason"] == "pruned" and t.user_attrs["epochs_run"] < 4 for t in pruned)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert max(t.value for t in complete) > max(t.intermediate_values[max(t.intermediate_values)] for t in pruned)


@pytest.mark.parametrize("name", ["hyperband", "successive_halving", "wilcoxon"])
def test_other_pruners_build(tmp_path, name):
    study = runner(tmp_path, pruner={"name": name}, n_trials=4).run()
    assert len(study.trials) == 4


def test_the_runner_uses_the_sweepers_default_pruner(tmp_path):
    study = SweepRunner(RLOptunaSweeperConf(params=SPACE, n_trials=1), synthetic, sweep_dir=tmp_path, study_name="d", n_epochs=2).open_study()
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)
    assert study.user_attrs["hydrarl.pruner"] == {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2}


def test_epoch_cap_is_factor_times_fastest_early_stop_and_keeps_n_epochs(tmp_path):
    study = runner(tmp_path, functools.partial(synthetic, early_stop=0.6), n_epochs=20, n_jobs=1, n_trials=6, epoch_cap_factor=1.5).run()
    early = [t.user_attrs["epochs_run"] for t in study.trials if t.user_attrs["stop_reason"] == "early_stopped"]
    assert early
    cap = study.user_attrs[EPOCH_CAP_ATTR]
    assert cap == int(-(-1.5 * min(early) // 1)) < 20
    first_early = next(t.number for t in study.trials if t.user_attrs["stop_reason"] == "early_stopped")
    given = [sweep_objective.parse(t.user_attrs["overrides"]) for t in study.trials]
    assert all(g["trainer.n_epochs"] == "20" for g in given)  # a capped trial keeps its run length (and schedules) ...
    assert all("trainer.epoch_cap" not in g for g in given[: first_early + 1])
    assert given[-1]["trainer.epoch_cap"] == str(cap)  # ... and stops at the cap
    assert all(t.user_attrs["epochs_run"] <= cap for t in study.trials[first_early + 1 :])


def test_cap_persists_in_the_study(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    runner(tmp_path, functools.partial(synthetic, early_stop=0.6), n_epochs=20, n_jobs=1, n_trials=3, storage=storage).run()
    again = runner(tmp_path, n_epochs=20, n_trials=3, storage=storage)
    assert again.epoch_cap(again.open_study()) < 20


def test_deleting_the_stop_file_lets_running_trials_finish_and_starts_no_more(tmp_path):
    study = runner(tmp_path, functools.partial(synthetic, duration=0.05, stop_file=tmp_path / STOP_FILE), n_trials=30, n_jobs=2).run()
    assert 3 <= len(study.trials) <= 5
    assert all(t.state.is_finished() for t in study.trials)


def test_max_duration_stops_the_search(tmp_path):
    start = time.time()
    study = runner(tmp_path, functools.partial(synthetic, duration=0.1), n_trials=1000, max_duration_minutes=0.01).run()
    assert time.time() - start < 5 and 2 <= len(study.trials) < 30


def test_a_crashing_or_nan_trial_fails_alone(tmp_path):
    study = runner(tmp_path, functools.partial(synthetic, crash_above=0.75, nan_below=0.1), n_trials=12,
                   sampler={"name": "random", "seed": 5}).run()
    assert len(study.trials) == 12
    for t in study.trials:
        bad = t.params["x"] > 0.75 or t.params["x"] < 0.1
        assert (t.state == TrialState.FAIL) == bad
        if t.params["x"] > 0.75:
            assert "deliberate crash" in t.user_attrs["error"]
    assert any(t.state == TrialState.COMPLETE for t in study.trials)


def test_max_failure_rate_stops_a_broken_search(tmp_path):
    study = runner(tmp_path, functools.partial(synthetic, crash_above=-1), n_trials=40, n_jobs=1, max_failure_rate=0.5).run()
    assert len(study.trials) == 4


def test_repeats_aggregate_seeds_and_keep_them(tmp_path):
    for aggregate in ("mean", "iqm"):
        study = runner(tmp_path / aggregate, n_trials=2, repeats=4, aggregate=aggregate, n_epochs=30).run()
        for t in study.trials:
            per_seed = t.user_attrs["per_seed/score"]
            assert len(per_seed) == 4 and len(set(per_seed)) > 1
            expected = sum(sorted(per_seed)[1:3]) / 2 if aggregate == "iqm" else sum(per_seed) / 4
            assert t.value == pytest.approx(expected)


def test_top_k_are_reevaluated_with_fresh_seeds(tmp_path):
    study = runner(tmp_path, n_trials=4, reevaluate_top_k=2, reevaluate_repeats=3).run()
    scores = {int(k.split("/")[1]): v for k, v in study.user_attrs.items() if k.startswith("reevaluation/")}
    assert len(scores) == 2 and all(len(v) == 3 for v in scores.values())
    reevaluated = [t for t in study.trials if t.number in scores]
    assert min(t.value for t in reevaluated) >= max(t.value for t in study.trials if t not in reevaluated)


def test_no_batch_barrier_a_free_worker_starts_the_next_trial(tmp_path):
    def durations(asynchronous):
        sweep_objective.CALLS.clear()
        search = runner(tmp_path / str(asynchronous), lambda job: synthetic(job, duration=0.6 if job.number == 0 else 0.05),
                        n_trials=4, n_jobs=2, asynchronous=asynchronous, sampler={"name": "random", "seed": 0})
        search.run()
        return {c["number"]: c for c in sweep_objective.CALLS}, search.utilization

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
from hydrarl.sweep.settings import RLOptunaSweeperConf
from hydrarl.sweep.runner import SweepRunner
from tests.helpers.sweep_objective import synthetic
logging.basicConfig(level=logging.INFO)
s = RLOptunaSweeperConf(params={"x": "interval(0.0, 1.0)"}, n_trials=8, n_jobs=2, sampler={"name": "random", "seed": 0},
                        pruner={"name": "none"})
SweepRunner(s, functools.partial(synthetic, duration=0.4), sweep_dir=Path(sys.argv[1]), study_name="k", n_epochs=3).run()
"""


def test_resume_after_sigkill_adopts_running_trials_and_honours_the_total(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", RESUMABLE, str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "trial 3 started" in line:  # trials 0-2 started before it, and it runs (0.4 s)
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna_journal.log")))
    killed = optuna.load_study(study_name="k", storage=storage).trials
    before = {t.number: t.value for t in killed if t.state == TrialState.COMPLETE}
    running = {t.number: t.params for t in killed if t.state == TrialState.RUNNING}
    assert before and running
    done = subprocess.run([sys.executable, "-c", RESUMABLE, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for number in running:
        assert f"trial {number} was left running by a sweeper that died; adopted under its number" in done.stderr
    study = optuna.load_study(study_name="k", storage=storage)
    after = {t.number: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    assert all(after[n] == v for n, v in before.items())
    # The killed trials finish under their own numbers and parameters; none runs twice; 8 in all.
    assert [t.number for t in study.trials] == list(range(8)) and set(after) == set(range(8))
    assert all(study.trials[n].params == params for n, params in running.items())
    assert len({t.params["x"] for t in study.trials}) == 8


def test_a_second_runner_on_a_held_sweep_dir_is_refused(tmp_path):
    first = runner(tmp_path, n_trials=1)
    with first.locked():
        with pytest.raises(UserError, match="search .* is in use by a live process"):
            runner(tmp_path, n_trials=1).run()
    assert runner(tmp_path, n_trials=1).run().trials  # free again


def test_an_adopted_trial_keeps_results_resumes_checkpoints_and_reruns_the_rest_per_seed(tmp_path):
    first = runner(tmp_path, n_trials=1, repeats=3)
    study = first.open_study()
    trial = study.ask(first.distributions)  # as a sweeper that died after starting the trial leaves it
    trial.set_user_attr(OWNER_ATTR, first.owner)
    jobs = first._jobs(trial.number, trial._trial_id, first._overrides(trial, first.epoch_cap(study)), first._seeds(3))
    trial.set_user_attr("overrides", jobs[0].overrides)
    seed_0, seed_1, seed_2 = (job.run_dir for job in jobs)
    kept = synthetic(jobs[0]).result
    seed_0.mkdir(parents=True)
    (seed_0 / "trial_result.json").write_text(json.dumps(kept))
    (seed_1 / "checkpoints" / "last").mkdir(parents=True)
    (seed_1 / "checkpoints" / "last" / "trainer_state.json").write_text("{}")

    calls = []
    again = runner(tmp_path, lambda job: calls.append(job) or synthetic(job), n_trials=1, repeats=3)
    study = again.run()
    assert len(study.trials) == 1 and study.trials[0].state == TrialState.COMPLETE
    assert [(job.run_dir, job.resume) for job in calls] == [(seed_1, True), (seed_2, False)]
    assert f"trainer.resume={seed_1}" in calls[0].as_job([]).overrides
    assert study.trials[0].user_attrs["per_seed/score"][0] == kept["score"]


@pytest.mark.parametrize("name", ["random", "tpe"])
def test_a_resumed_search_proposes_new_parameter_sets(tmp_path, name):
    runner(tmp_path, n_trials=3, sampler={"name": name, "seed": 0}).run()
    study = runner(tmp_path, n_trials=5, sampler={"name": name, "seed": 0}).run()
    assert len(study.trials) == 5 and len({t.params["x"] for t in study.trials}) == 5


@pytest.mark.parametrize("setting, value", [
    ("n_trials", 0), ("n_jobs", 0), ("repeats", 0), ("reevaluate_top_k", -1), ("reevaluate_repeats", 0),
    ("direction", "maximise"), ("objectives", []), ("epoch_cap_factor", 0), ("max_duration_minutes", -1),
    ("max_failure_rate", 1.5), ("aggregate", "median"), ("seed", -1), ("n_trials", 2.5), ("objectives", ["nope"]),
    ("objectives", ["eval"]),
])
def test_bad_sweeper_settings_are_user_errors_before_anything_is_recorded(tmp_path, setting, value):
    with pytest.raises(UserError, match=f"hydra.sweeper.{setting}=") as error:
        runner(tmp_path / "sweep", **{setting: value})
    assert "\n" not in str(error.value) and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("expression, says", [
    ("choice()", "empty choice is not legal"), ("range(5, 1)", "empty or inverted"), ("range(0, 5, 0)", "empty or inverted"),
    ("interval(1.0, 0.5)", "empty or inverted"), ("interval(0.5, 0.5)", "empty or inverted"),
    ("tag(log, interval(0, 1))", "log scale"), ("tag(log, range(0, 4))", "log scale"),
])
def test_bad_search_spaces_are_user_errors(tmp_path, expression, says):
    with pytest.raises(UserError, match="search space: ") as error:
        runner(tmp_path / "sweep", params={"x": expression})
    assert says in str(error.value) and "\n" not in str(error.value) and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("objective", ["score", "best_mean", "num_timesteps", "epochs_run", "met_at_step", "best_score",
                                       "eval/mean_reward", "eval/success_rate", "train/actor_loss", "time/fps"])
def test_objectives_may_name_a_trial_results_numbers_or_a_logged_metric(tmp_path, objective):
    runner(tmp_path / "sweep", objectives=[objective])


@pytest.mark.parametrize("setting, value, says", [
    ("sampler", {"name": "nope"}, "hydra.sweeper.sampler.name=nope is unknown; one of tpe, random"),
    ("sampler", {"_target_": "optuna.samplers.Nope"}, "hydra.sweeper.sampler._target_=optuna.samplers.Nope cannot be built"),
    ("sampler", {"name": "grid"}, "sampler=grid needs choice(...) or range(...)"),
    ("pruner", {"name": "nope"}, "hydra.sweeper.pruner.name=nope is unknown; one of median"),
    ("pruner", {"_target_": "optuna.pruners.Nope"}, "hydra.sweeper.pruner._target_=optuna.pruners.Nope cannot be built"),
    ("storage", "nope://x", "hydra.sweeper.storage=nope://x cannot be used"),
])
def test_sampler_pruner_and_storage_are_checked_before_the_study_is_opened(tmp_path, setting, value, says):
    """The runner refuses them when it is made: no sweep dir, no study (open_study is never reached)."""
    with pytest.raises(UserError) as error:
        runner(tmp_path / "sweep", **{setting: value})
    assert str(error.value).startswith(says) and "\n" not in str(error.value) and not (tmp_path / "sweep").exists()


def test_probe_values_cover_every_choice_and_both_ends_of_ranges():
    from hydrarl.sweep.space import parse_space, probe_values

    distributions, _ = parse_space({"a": "choice(1, 2, 3)", "b": "interval(0.5, 1.5)", "c": "range(0, 10, 3)", "d": "choice(x)"})
    assert probe_values(distributions) == [{"a": 1, "b": 0.5, "c": 0, "d": "x"}, {"a": 2, "b": 1.5, "c": 9, "d": "x"},
                                           {"a": 3, "b": 0.5, "c": 0, "d": "x"}]
    assert probe_values({}) == [{}]


def test_failed_trials_say_why_in_one_line(tmp_path, caplog):
    study = runner(tmp_path, functools.partial(synthetic, crash_above=-1), n_trials=2).run()
    assert [(f.number, f.reason) for f in failed_trials(study)] == [(0, "RuntimeError: deliberate crash"), (1, "RuntimeError: deliberate crash")]
    assert "trial 1 failed: RuntimeError: deliberate crash; the search goes on" in caplog.text


@pytest.mark.parametrize("text, reason", [
    ("exit status 2\n$ train.py x=1\nerror: unknown config key 'x'. Keys: a, b.", "error: unknown config key 'x'. Keys: a, b."),
    ("exit status 1\nerror: an older start's\nTraceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    f()\n"
     "RuntimeError: boom\n\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", "RuntimeError: boom"),
    ("exit status -9 (killed by SIGKILL)\n[INFO] - epoch 1/4", "exit status -9 (killed by SIGKILL)"),
    ("objective score is missing or not finite: [nan]", "objective score is missing or not finite: [nan]"),
])
def test_failure_reason_is_the_runs_own_reason(text, reason):
    assert failure_reason(text) == reason


def test_custom_search_space_hook_adds_conditional_parameters(tmp_path):
    sweep_objective.CALLS.clear()
    study = runner(tmp_path, n_trials=10, custom_search_space="tests.helpers.sweep_objective.conditional_space").run()
    for t in study.trials:
        assert ("y" in t.params) == (t.params["x"] > 0.5)
    with_y = [c for c in sweep_objective.CALLS if "y" in sweep_objective.parse(c["overrides"])]
    assert len(with_y) == sum("y" in t.params for t in study.trials)


def test_unknown_custom_search_space_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="custom_search_space"):
        runner(tmp_path, custom_search_space="tests.nowhere.space")


def test_results_files_for_one_and_for_several_objectives(tmp_path):
    import yaml

    from hydrarl.sweep.results import write_results

    one = runner(tmp_path / "one", n_trials=5)
    study = one.run()
    write_results(study, one, ["+search=X/y", "seed=9"])
    summary = yaml.safe_load((tmp_path / "one" / "optimization_results.yaml").read_text())
    assert summary["best_value"] == study.best_value and summary["best_params"] == study.best_params
    assert summary["storage"] == one.storage and summary["worker_utilization"] == round(one.utilization, 4)
    line = (tmp_path / "one" / "best_overrides.txt").read_text().split()
    assert line[0] == "+search=X/y" and f"x={study.best_params['x']!r}" in line and line.count("seed=0") == 1
    assert "seed=9" not in line  # the trial's own seed replaces the base one
    assert (tmp_path / "one" / "plots" / "history.png").exists()

    two = runner(tmp_path / "two", functools.partial(synthetic, early_stop=0.6), n_trials=6, direction=["maximize", "minimize"],
                 objectives=["score", "num_timesteps"], sampler={"name": "nsgaii", "seed": 0})
    study = two.run()
    write_results(study, two, [])
    summary = yaml.safe_load((tmp_path / "two" / "optimization_results.yaml").read_text())
    assert {t["number"] for t in summary["pareto_front"]} == {t.number for t in study.best_trials}
    assert (tmp_path / "two" / "plots" / "pareto_front.png").exists()


def test_pruner_none_ignores_a_presets_pruner_settings_and_bad_settings_are_user_errors(tmp_path):
    study = runner(tmp_path / "a", pruner={"name": "none", "n_startup_trials": 4}, n_trials=2).run()
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    with pytest.raises(UserError, match="MedianPruner"):
        runner(tmp_path / "b", pruner={"name": "median", "bogus": 1}).run()
    with pytest.raises(UserError, match="RandomSampler"):
        runner(tmp_path / "c", sampler={"name": "random", "bogus": 1}).run()


def test_a_raising_search_space_hook_fails_that_trial_only(tmp_path):
    study = runner(tmp_path, n_trials=8, custom_search_space="tests.helpers.sweep_objective.broken_space").run()
    assert len(study.trials) == 8
    for t in study.trials:
        assert (t.state == TrialState.FAIL) == (t.params["x"] > 0.5)
