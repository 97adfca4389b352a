"""The regression matrix: scheduler (process cap, launch spacing, GPU gate with a stand-in
nvidia-smi, failures, a job's TrialResult), the bar verdict rule, and run_testing's exit status and
verdict file."""

import json
import os
import sys
import threading
import time
from pathlib import Path

import minari
import pytest

from hydrarl.config import validate
from hydrarl.config.compose import available, compose
from hydrarl.launchers.matrix import BARS_DIR, Bar, bar_verdicts, curve_verdict, hopeless, prepare_bar, run_verdict
from hydrarl.launchers.pairs import covering
from hydrarl.launchers.run_testing import main, parse_gpus
from hydrarl.launchers.scheduler import MatrixJob, Scheduler
from hydrarl.training.result import RESULT_FILE, TrialResult
from hydrarl.training.stopping import history_points, progress

PY = sys.executable


def sleeper(tmp_path, name, seconds=0.4, code="", exit_code=0):
    lines = ["import os, sys, time", f"time.sleep({seconds})", "print('CVD=' + repr(os.environ.get('CUDA_VISIBLE_DEVICES')))", code,
             f"sys.exit({exit_code})"]
    script = "\n".join(line for line in lines if line)
    return MatrixJob(name, [PY, "-c", script], tmp_path / f"{name}.log")


def overlap(jobs):
    events = sorted([(j.started, 1) for j in jobs] + [(j.ended, -1) for j in jobs])
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


@pytest.fixture
def no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}:/usr/bin:/bin")


def test_process_cap_is_never_exceeded(tmp_path, no_gpu):
    jobs = [sleeper(tmp_path, f"j{i}") for i in range(6)]
    Scheduler(max_procs=2, spacing=0, poll=0.02, say=lambda m: None).run(jobs)
    assert all(j.ok for j in jobs)
    assert overlap(jobs) == 2


def test_launches_are_spaced(tmp_path, no_gpu):
    jobs = [sleeper(tmp_path, f"j{i}", seconds=0.1) for i in range(3)]
    Scheduler(max_procs=3, spacing=0.5, poll=0.02, say=lambda m: None).run(jobs)
    starts = sorted(j.started for j in jobs)
    assert all(b - a >= 0.5 for a, b in zip(starts, starts[1:], strict=False))


def test_without_nvidia_smi_everything_runs_on_the_cpu_and_it_says_so_once(tmp_path, no_gpu):
    said = []
    jobs = [sleeper(tmp_path, f"j{i}", seconds=0) for i in range(2)]
    Scheduler(max_procs=2, spacing=0, poll=0.02, say=said.append).run(jobs)
    assert sum("running every job on the CPU" in m for m in said) == 1
    assert all("CVD=''" in j.log.read_text() for j in jobs)


def fake_nvidia_smi(tmp_path, free_file):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\ncat {free_file}\n")
    tool.chmod(0o755)
    return bin_dir


def test_gpu_gate_starts_jobs_only_on_a_gpu_with_enough_free_memory(tmp_path, monkeypatch):
    free = tmp_path / "free.csv"
    free.write_text("0, 1000\n1, 800\n")  # nobody has 2500 MB free yet
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path, free)}:/usr/bin:/bin")
    threading.Timer(0.8, lambda: free.write_text("0, 1000\n1, 6000\n")).start()
    start = time.time()
    jobs = [sleeper(tmp_path, "j0", seconds=0)]
    Scheduler(max_procs=2, spacing=0, gpus=[0, 1], min_free_mb=2500, poll=0.05, say=lambda m: None).run(jobs)
    assert jobs[0].started - start >= 0.7
    assert jobs[0].gpu == 1 and "CVD='1'" in jobs[0].log.read_text()


def test_gpu_gate_ignores_gpus_not_listed(tmp_path, monkeypatch):
    free = tmp_path / "free.csv"
    free.write_text("0, 9000\n1, 9000\n")
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path, free)}:/usr/bin:/bin")
    jobs = [sleeper(tmp_path, "j0", seconds=0)]
    Scheduler(max_procs=1, spacing=0, gpus=parse_gpus("(1)"), poll=0.02, say=lambda m: None).run(jobs)
    assert "CVD='1'" in jobs[0].log.read_text()


def test_a_job_fails_on_exit_status_or_a_traceback_in_its_log(tmp_path, no_gpu):
    bad_exit = sleeper(tmp_path, "bad", seconds=0, exit_code=3)
    traceback_only = sleeper(tmp_path, "tb", seconds=0, code="print('Traceback (most recent call last):'); print('ValueError: x')")
    good = sleeper(tmp_path, "good", seconds=0)
    Scheduler(max_procs=4, spacing=0, poll=0.02, say=lambda m: None).run([bad_exit, traceback_only, good])
    assert (bad_exit.ok, traceback_only.ok, good.ok) == (False, False, True)
    assert "ValueError" in traceback_only.error and bad_exit.error == "exit status 3"
    assert good.log.read_text().startswith(f"$ {PY} -c ")


def test_a_job_gets_the_trial_result_its_run_left_and_none_without_one(tmp_path, no_gpu):
    result = TrialResult(0.5, 2, True, "early_stopped", None, best_mean=0.5, met_at_step=2000)
    jobs = []
    for name, exit_code in (("finished", 0), ("crashed", 1)):
        run_dir = tmp_path / f"{name}_run"
        run_dir.mkdir()
        write = f"import pathlib; pathlib.Path({str(run_dir / RESULT_FILE)!r}).write_text({json.dumps(result.to_dict())!r})"
        jobs.append(sleeper(tmp_path, name, seconds=0, code=write, exit_code=exit_code))
        jobs[-1].run_dir = run_dir
    finished, crashed = jobs
    Scheduler(max_procs=2, spacing=0, poll=0.02, say=lambda m: None).run([finished, crashed])
    assert finished.result == json.loads(json.dumps(result.to_dict())) and finished.result["status"] == "early_stopped"
    assert crashed.result is None  # a run that did not exit 0 has no result, whatever it left


def test_a_passed_jobs_scratch_is_deleted_and_a_failed_jobs_kept(tmp_path, no_gpu):
    jobs = [sleeper(tmp_path, name, seconds=0, exit_code=code) for name, code in (("good", 0), ("bad", 1))]
    for job in jobs:
        job.scratch = tmp_path / f"{job.name}_run"
        (job.scratch / "checkpoints").mkdir(parents=True)
    Scheduler(max_procs=2, spacing=0, poll=0.02, say=lambda m: None).run(jobs)
    assert not jobs[0].scratch.exists() and (jobs[1].scratch / "checkpoints").is_dir()


def bar(**kw):
    base = dict(name="E/a", total_runs=3, succ_runs=2, metric="eval/success_rate", value=0.9, max_steps=3000, last_n=2)
    return Bar(**{**base, **kw})


def hist(values, step=1000):
    return [{"eval/success_rate": v, "time/total_timesteps": step * (i + 1)} for i, v in enumerate(values)]


def verdict_of(values, b):
    return curve_verdict(history_points(hist(values), b.metric), b)


def result_of(values, b):
    """The TrialResult fields a run of ``b`` reports (its early stop is the bar's rule)."""
    reached = progress(history_points(hist(values), b.metric), b.last_n, b.value)
    return {"best_mean": reached.best_mean, "met_at_step": reached.met_at_step}


def test_run_verdict_mean_of_last_n_within_max_steps():
    b = bar()
    assert verdict_of([0.0, 0.9, 1.0], b) == {"passed": True, "steps": 3000, "best_mean": 0.95}
    assert verdict_of([0.0, 1.0, 0.7], b)["passed"] is False  # means 0.5, 0.85
    late = verdict_of([0.0, 0.0, 0.0, 1.0, 1.0], b)
    assert late["passed"] is False and late["best_mean"] == 1.0  # met only at 5000 > max_steps
    assert verdict_of([], b) == {"passed": False, "steps": None, "best_mean": None}
    assert verdict_of([float("nan"), 0.0, 0.5], b)["best_mean"] == 0.25  # a NaN window is no best


def test_run_verdict_from_a_trial_result_is_the_curve_verdict():
    b = bar()
    for values in ([0.0, 0.9, 1.0], [0.0, 1.0, 0.7], [0.0, 0.0, 0.0, 1.0, 1.0], [0.3]):
        assert run_verdict(result_of(values, b), b) == verdict_of(values, b)
    assert run_verdict(None, b) == {"passed": False, "steps": None, "best_mean": None}  # no result file
    assert run_verdict({"status": "completed"}, b)["passed"] is False  # a result written before these fields


def test_bar_verdict_counts_runs_and_hopeless_stops_a_bar(tmp_path):
    b = bar()
    jobs = []
    for seed, values in ((1, [1.0, 1.0]), (2, [0.0, 0.1]), (3, None)):
        run_dir = tmp_path / f"s{seed}"
        job = MatrixJob(f"E/a#seed{seed}", [], tmp_path / f"{seed}.log", meta={"bar": "E/a", "seed": seed}, run_dir=run_dir)
        if values is not None:
            job.result, job.returncode = result_of(values, b), 0
        jobs.append(job)
    (verdict,) = bar_verdicts(jobs, [b])
    assert (verdict["passed_runs"], verdict["passed"], verdict["best_value_reached"]) == (1, False, 1.0)
    assert verdict["runs"][2]["skipped"]
    assert not hopeless(b, jobs)  # 1 passed, 1 failed, 1 to run: 2 of 3 still possible
    jobs[0].returncode = 1  # the passing run crashed after all
    assert hopeless(b, jobs)


def write_bar(directory, name, value):
    path = directory / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"total_runs: 1\nsucc_runs: 1\nmetric: eval/mean_reward\nvalue: {value}\nmax_steps: 400\nlast_n: 2\n"
        "eval_after_n_steps: 200\nn_test_rollouts: 1\n"
        "overrides: ['logger=[]', algorithm.learning_starts=50, algorithm.batch_size=32]\n"
    )


def test_run_testing_performance_exit_status_and_failure_line(tmp_path, capsys):
    bars = tmp_path / "bars"
    write_bar(bars, "Pendulum/sac", -1e9)    # any policy meets it
    write_bar(bars, "Pendulum/td3", 1e9)     # nothing can
    code = main(["-t", "performance", "-p", "2", "-s", "0", "-b", str(bars), "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    verdict = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert [(v["bar"], v["passed"]) for v in verdict["bars"]] == [("Pendulum/sac", True), ("Pendulum/td3", False)]
    line = next(x for x in out.splitlines() if x.startswith("FAIL Pendulum/td3"))
    assert "needed 1e+09" in line and "reached -" in line
    assert len((tmp_path / "out" / "test_cmds.txt").read_text().splitlines()) == 2


def test_run_testing_refuses_a_filter_that_matches_nothing(tmp_path, capsys):
    assert main(["-t", "performance", "-f", "NoSuchEnv", "-o", str(tmp_path / "o")]) == 2
    assert "no performance bar matches" in capsys.readouterr().err
    assert main(["-g", "gpu", "-o", str(tmp_path / "o2")]) == 2


def test_run_testing_function_tier_passes_for_a_small_filter(tmp_path, capsys):
    code = main(["-t", "function", "-c", "-p", "2", "-s", "0", "-f", "CartPole/a2c", "-o", str(tmp_path / "f"), "-k"])
    assert code == 0
    assert "covering set (-c): 1 of the 1 built pairs train" in capsys.readouterr().out
    verdict = json.loads((tmp_path / "f" / "verdict.json").read_text())
    assert [j["name"] for j in verdict["jobs"]] == ["CartPole/a2c"] and verdict["passed"]
    assert "round trip ok" in (tmp_path / "f" / "logs" / "CartPole_a2c.log").read_text()
    assert os.path.exists(tmp_path / "f" / "runs" / "CartPole_a2c" / "checkpoints" / "last" / "model.zip")


def test_the_covering_set_trains_each_algorithm_on_each_kind_of_env_and_each_env_once():
    """Envs with the same policy alias and the same built algorithms are one kind: each algorithm trains on one of
    them, the envs in turn (three envs, two algorithms: three jobs); CarRacing has the algorithms of the vector envs
    but images (CnnPolicy), so it is a kind of its own; CartPole is too (other algorithms)."""
    vectors = [(env, algorithm) for env in ("Ant", "HalfCheetah", "Pendulum-p") for algorithm in ("sac", "td3")]
    built = [*vectors, ("CarRacing", "sac"), ("CarRacing", "td3"), ("CartPole", "dqn"), ("CartPole", "ppo")]
    assert covering(built) == [("Ant", "sac"), ("HalfCheetah", "td3"), ("Pendulum-p", "sac"), ("CarRacing", "sac"),
                               ("CarRacing", "td3"), ("CartPole", "dqn"), ("CartPole", "ppo")]
    assert covering(vectors[:2]) == vectors[:2]  # one env: every algorithm


def test_the_covering_option_belongs_to_the_function_tier(capsys):
    assert main(["-t", "performance", "-c", "-f", "Pendulum/sac"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: -c is an option of the function tier") and len(err.splitlines()) == 1


@pytest.mark.parametrize("name", available("performance", BARS_DIR))
def test_every_bar_composes_and_its_measurements_meet_it(name):
    """A bar's runs compose as the tier will start them, and the measured runs it records pass its own rule
    as often as it demands (so a bar is never set above what was seen)."""
    bar = Bar.load(BARS_DIR / f"{name}.yaml")
    validate(compose(bar.run_overrides(seed=1)))
    measured = bar.provenance["measured"]
    assert len(measured) >= bar.total_runs >= bar.succ_runs >= 1
    passed = 0
    for run in measured:
        points = run.get("steps_and_eval") or run.get("steps_and_eval_return")
        if points is None:  # the FetchReach bars list one value per 1,000-step epoch
            points = [[1000 * (i + 1), v] for i, v in enumerate(run["success_per_1000_steps"])]
        passed += curve_verdict([(steps, value) for steps, value in points], bar)["passed"]
    assert passed >= bar.succ_runs, f"{name}: {passed} of the recorded runs meet the bar, it asks for {bar.succ_runs}"


def test_a_bar_prepares_what_its_runs_need_once_and_fails_with_the_command_that_failed(tmp_path):
    """``prepare`` (an offline bar's dataset): its commands run from the project root, and not again once they have
    all succeeded; a ``creates`` left by a preparation that never finished is made again; a step whose own
    ``creates`` exists is skipped; a failing command makes the bar fail before any run, naming the command and its log."""
    dataset = tmp_path / "loop"
    record = f"experiment/collect.py env=PenguinPi collector=scripted episodes=1 env.max_episode_steps=5 one_shot=true dataset={dataset}"
    made_before = {"creates": str(tmp_path), "command": "experiment/collect.py collector=nobody"}  # would fail if it ran
    bar = Bar(name="PenguinPi/bc", total_runs=1, succ_runs=1, metric="eval/distance", value=1.0, max_steps=10,
              prepare={"creates": str(dataset), "commands": [made_before, record]})
    said: list[str] = []
    assert prepare_bar(bar, tmp_path / "out", said.append) is None
    assert (dataset / "data" / "metadata.json").exists() and len(said) == 2 and "this step is skipped" in said[0]
    assert prepare_bar(bar, tmp_path / "out", said.append) is None and len(said) == 2  # made already: nothing runs
    Path(f"{dataset}.prepared").unlink()  # as a collection stopped half-way leaves it: the dataset, no mark
    assert prepare_bar(bar, tmp_path / "out", said.append) is None
    assert "its preparation never finished" in said[2] and len(said) == 5 and Path(f"{dataset}.prepared").exists()
    assert minari.MinariDataset(dataset / "data").total_episodes == 1  # made afresh, not appended to
    broken = Bar(name="PenguinPi/iql", total_runs=1, succ_runs=1, metric="eval/distance", value=1.0, max_steps=10,
                 prepare={"creates": str(tmp_path / "never"), "commands": ["experiment/collect.py collector=nobody"]})
    why = prepare_bar(broken, tmp_path / "out", said.append)
    assert why.startswith("preparing its runs failed: experiment/collect.py collector=nobody exited 2")
    assert "collector=nobody is unknown" in (tmp_path / "out" / "logs" / "PenguinPi_iql_prepare.log").read_text()
