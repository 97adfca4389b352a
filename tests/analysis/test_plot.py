"""experiment/plot.py: run selection from a real MLflow store, aggregation across seeds checked against
hand computations (mean, IQM, bootstrap band, runs of unequal length), the figure's contents, an
end-to-end plot of three real training runs, and bad input (exit 2, one message, nothing written)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from hydrarl.analysis import curves as C
from hydrarl.analysis.plot import curves_for, group_colors, group_runs, main, plot_curves, steps_label
from hydrarl.analysis.runs import metric_history, select_runs
from hydrarl.errors import UserError
from hydrarl.paths import PROJECT_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.disks import readonly_dir

PLOT = PROJECT_ROOT / "experiment" / "plot.py"

# Known curves of metric "m": tag algorithm -> (seed, status, steps, values).
# alpha: 3 runs on one grid. beta: different grids and lengths (grid 100..400, see test_unequal_lengths).
KNOWN = {
    "alpha": [(1, "FINISHED", [100, 200, 300], [0, 1, 2]), (2, "FINISHED", [100, 200, 300], [0, 2, 4]),
              (3, "FINISHED", [100, 200, 300], [0, 3, 10]), (4, "RUNNING", [100, 200, 300], [50, 50, 50])],
    "beta": [(1, "FINISHED", [100, 300], [0, 4]), (2, "KILLED", [100, 200], [2, 6]), (3, "FINISHED", [200, 400], [1, 5])],
}


def _log(client, experiment_id, env, algorithm, seed, status, steps, values, metric="m"):
    run = client.create_run(experiment_id, run_name=f"{env}-{algorithm}-seed{seed}", tags={"env": env, "algorithm": algorithm, "seed": str(seed)})
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(metric, float(v), now + i, s) for i, (s, v) in enumerate(zip(steps, values, strict=True))])
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """A new sqlite store's file, schema created once (MLflow's migrations take seconds) and copied per store."""
    path = tmp_path_factory.mktemp("empty") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, empty_db):
    """A real sqlite store: experiment Toy with KNOWN, experiment Other with one run, and a resumed-like run."""
    path = shutil.copy(empty_db, tmp_path_factory.mktemp("store") / "mlflow.db")
    uri = f"sqlite:///{path}"
    client = MlflowClient(uri)
    toy = client.create_experiment("Toy")
    for algorithm, runs in KNOWN.items():
        for seed, status, steps, values in runs:
            _log(client, toy, "Toy", algorithm, seed, status, steps, values)
    other = client.create_experiment("Other")
    _log(client, other, "Other", "alpha", 1, "FINISHED", [100, 200], [7, 8])
    # logged 200 twice (a resume re-logs it: the later value counts) and a NaN at 300 (dropped)
    _log(client, other, "Other", "gamma", 1, "FAILED", [100, 200, 200, 300], [1, 2, 3, float("nan")])
    return uri, client


def _curve(client, uri, algorithm, agg, **kw):
    runs = select_runs(client, experiments=["Toy"], algorithms=[algorithm])
    (curve,) = curves_for(client, group_runs(runs), "m", agg, say=lambda _: None, **kw)
    return curve


def test_select_runs(store):
    uri, client = store
    runs = select_runs(client, experiments=["Toy"])
    assert [(r.data.tags["algorithm"], r.data.tags["seed"]) for r in runs] == [
        ("alpha", "1"), ("alpha", "2"), ("alpha", "3"), ("beta", "1"), ("beta", "2"), ("beta", "3")]  # RUNNING left out, KILLED in
    assert len(select_runs(client, experiments=["Toy"], statuses=None)) == 7
    assert [r.data.tags["seed"] for r in select_runs(client, algorithms=["alpha"], tags={"seed": "1"})] == ["1", "1"]  # both experiments
    assert [r.data.tags["env"] for r in select_runs(client, envs=["Other"], statuses=["FAILED"])] == ["Other"]
    ids = [runs[4].info.run_id, runs[0].info.run_id]
    assert {r.info.run_id for r in select_runs(client, run_ids=ids)} == set(ids)
    with pytest.raises(UserError, match="no run matches algorithm=delta.*algorithm: alpha \\(4\\), beta \\(3\\)"):
        select_runs(client, experiments=["Toy"], algorithms=["delta"])
    with pytest.raises(UserError, match="unknown experiment.*Nope.*Other, Toy"):
        select_runs(client, experiments=["Nope"])
    with pytest.raises(UserError, match="--run-id 0123abc: no such run"):
        select_runs(client, run_ids=["0123abc"])


def test_metric_history_keeps_last_value_of_a_step_and_drops_nan(store):
    uri, client = store
    (run,) = select_runs(client, algorithms=["gamma"], statuses=None)
    steps, values = metric_history(client, run.info.run_id, "m")
    assert steps.tolist() == [100, 200] and values.tolist() == [1.0, 3.0]
    assert metric_history(client, run.info.run_id, "absent")[0].shape == (0,)


def test_mean_and_iqm_of_three_seeds_match_hand_computation(store):
    uri, client = store
    mean = _curve(client, uri, "alpha", "mean")
    assert mean.n_runs == 3 and mean.steps.tolist() == [100, 200, 300] and mean.count.tolist() == [3, 3, 3]
    np.testing.assert_allclose(mean.value, [0, 2, 16 / 3])
    iqm = _curve(client, uri, "alpha", "iqm")
    # IQM (rliable's: the 25 % trimmed mean) of 3 values trims none of them: the mean
    np.testing.assert_allclose(iqm.value, [0, 2, 16 / 3])
    # P(a resample repeats one run) = 1/27 > 2.5 %: the band of 3 runs is [min, max] for both aggregates
    for curve in (mean, iqm):
        np.testing.assert_allclose(curve.low, [0, 1, 2])
        np.testing.assert_allclose(curve.high, [0, 3, 10])
        assert np.all((curve.low <= curve.value) & (curve.value <= curve.high))
        widths = curve.high - curve.low
        assert widths[0] == 0 < widths[1] < widths[2]  # no spread -> no band; more spread -> wider


def test_unequal_lengths_interpolate_within_each_run(store):
    uri, client = store
    curve = _curve(client, uri, "beta", "mean")
    # rows on the grid 100..400: r1 [0, 2, 4, -], r2 [2, 6, -, -], r3 [-, 1, 3, 5]
    assert curve.steps.tolist() == [100, 200, 300, 400] and curve.count.tolist() == [2, 3, 2, 1]
    np.testing.assert_allclose(curve.value, [1, 3, 3.5, 5])
    np.testing.assert_allclose(_curve(client, uri, "beta", "iqm").value, [1, 3, 3.5, 5])
    assert curve.low[-1] == curve.high[-1] == 5  # one run left: no band
    short = _curve(client, uri, "beta", "mean", min_runs=2)
    assert short.steps.tolist() == [100, 200, 300]


def test_a_budget_cuts_each_run_at_max_steps_and_takes_its_final_score_there(store, tmp_path, capsys):
    uri, client = store
    # beta cut at 250: r1 [0 @100], r2 [2 @100, 6 @200], r3 [1 @200]; grid 100, 200
    curve = _curve(client, uri, "beta", "mean", max_steps=250)
    assert curve.steps.tolist() == [100, 200] and curve.count.tolist() == [2, 2]
    np.testing.assert_allclose(curve.value, [1, 3.5])
    assert curve.finals.tolist() == [0, 6, 1]
    notes = []
    runs = select_runs(client, experiments=["Toy"], algorithms=["beta"])
    (early,) = curves_for(client, group_runs(runs), "m", say=notes.append, max_steps=150)  # r3 starts at 200
    assert early.n_runs == 2 and notes == ["note: 1 run(s) without m at or before 150 steps left out: Toy-beta-seed3"]
    out = tmp_path / "budget"
    assert main(["--tracking-uri", uri, "--experiment", "Toy", "--metric", "m", "--n-boot", "100", "--max-steps", "250", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == "m (mean, last step): alpha 2 at 200; beta 3.5 at 200"
    assert printed[2].startswith("final m per run within 250 steps: IQM and mean")


@pytest.mark.parametrize("agg", ["mean", "iqm"])
def test_band_scales_with_spread(agg):
    rng = np.random.default_rng(1)
    runs = rng.normal(size=(5, 20))
    hist = lambda m: [(np.arange(20) * 1000, row) for row in m]  # noqa: E731
    narrow = C.aggregate_runs(hist(runs), agg=agg, n_boot=500)
    wide = C.aggregate_runs(hist(3 * runs), agg=agg, n_boot=500)
    np.testing.assert_allclose(wide.value, 3 * narrow.value)
    np.testing.assert_allclose(wide.high - wide.low, 3 * (narrow.high - narrow.low))  # same resamples, 3x spread
    assert np.all(narrow.high > narrow.low)
    again = C.aggregate_runs(hist(runs), agg=agg, n_boot=500)
    np.testing.assert_array_equal(again.low, narrow.low)  # seeded: reproducible


def test_figure_one_line_and_band_per_group(store):
    uri, client = store
    runs = select_runs(client, experiments=["Toy"])
    curves = curves_for(client, group_runs(runs), "m", "iqm", n_boot=200, say=lambda _: None)
    fig = plot_curves(curves, "m", "Toy", "iqm", 200)
    (ax,) = fig.axes
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["alpha (3 runs)", "beta (3 runs)"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0, 2, 16 / 3])
    palette = group_colors(["gamma", "alpha", "beta"])  # a group with no curve in this figure keeps its colour
    beta_only = plot_curves(curves[1:], "m", colors=palette).axes[0]
    assert beta_only.lines[0].get_color() == palette["beta"] != ax.lines[0].get_color()
    assert ax.get_xlabel() == "env steps" and ax.get_ylabel() == "m" and "IQM" in ax.get_title()
    assert [steps_label(x) for x in (500, 10_000, 2_500, 1_200_000)] == ["500", "10k", "2.5k", "1.2M"]
    labels = sorted(group_runs(select_runs(client, algorithms=["alpha"])))
    assert labels == ["Other/alpha", "Toy/alpha"]  # several envs -> env/algorithm


def test_main_writes_png_and_csv(store, tmp_path, capsys):
    uri, _ = store
    out = tmp_path / "plots"
    assert main(["--tracking-uri", uri, "--experiment", "Toy", "--metric", "m", "--n-boot", "100", "--min-runs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-4:] == [str(out / name) for name in ("m.png", "m.csv", "m_final.png", "m_final.csv")]
    for png in ("m.png", "m_final.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # final scores (each run's last value): alpha 2, 4, 10; beta 4, 6, 5. IQM of 3 = mean; P(alpha > beta):
    # 10 beats all three, 4 ties with 4 (a half): 3.5 of 9 pairs
    assert printed[2].startswith("final m per run: IQM and mean over runs, [95% stratified-bootstrap interval]")
    assert printed[5].startswith("| alpha |    3 | 5.33 [") and printed[6].startswith("| beta  |    3 | 5 [")
    assert printed[7].startswith("P(alpha > beta) = 0.389 [")
    final = {(r["kind"], r["group"], r["other"]): r for r in csv.DictReader(open(out / "m_final.csv"))}
    assert float(final["iqm", "alpha", ""]["value"]) == pytest.approx(16 / 3)
    assert float(final["p_improvement", "alpha", "beta"]["value"]) == pytest.approx(3.5 / 9)
    assert [final["score", "beta", str(i)]["value"] for i in range(3)] == ["4", "6", "5"]
    rows = list(csv.DictReader(open(out / "m.csv")))
    assert [(r["group"], r["step"], r["runs_at_step"]) for r in rows] == [
        ("alpha", "100", "3"), ("alpha", "200", "3"), ("alpha", "300", "3"), ("beta", "100", "2"), ("beta", "200", "3"), ("beta", "300", "2")]
    assert float(rows[5]["value"]) == 3.5


@pytest.mark.parametrize("args, message", [
    (["--experiment", "Nope"], "error: unknown experiment(s) Nope; the store has: Default, Other, Toy."),
    (["--tag", "seed"], "error: --tag 'seed' is not KEY=VALUE"),
    (["--algorithm", "delta"], "error: no run matches algorithm=delta status=FINISHED|KILLED"),
    (["--experiment", "Toy", "--metric", "eval/success_rate"], "error: no selected run has the metric eval/success_rate; they have: m."),
    (["--experiment", "Toy"], "error: the selected runs have neither eval/success_rate nor eval/mean_reward; give --metric, one of: m."),
    (["--status", "DONE"], "error: --status DONE is unknown"),
    (["--group-by", "optimizer"], "error: --group-by optimizer: no selected run has this tag or param"),
    (["--max-steps", "0"], "error: argument --max-steps: '0' is not allowed: give an integer >= 1 (the budget in env steps)"),
    (["--experiment", "Toy", "--metric", "m", "--max-steps", "50"], "error: no selected run logged m within 50 steps at 1 or more runs"),
], ids=["unknown-experiment", "malformed-tag", "no-run-matched", "unknown-metric", "no-default-metric", "unknown-status", "unknown-group-key",
        "budget-below-one", "budget-before-any-value"])
def test_bad_input_exit_2(store, tmp_path, capsys, args, message):
    uri, _ = store
    assert main(["--tracking-uri", uri, "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_read_only_out_is_refused_before_the_histories_are_read(store, tmp_path, capsys):
    uri, _ = store
    with readonly_dir(tmp_path / "ro") as ro:
        assert main(["--tracking-uri", uri, "--experiment", "Toy", "--metric", "m", "--out", str(ro)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: --out={ro} cannot be written (Read-only file system); choose a folder you can write to, with free space.\n"
    assert "last step" not in captured.out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, empty_db):
    """Three real CartPole PPO runs, seeds 1..3, in one multirun into a fresh store."""
    root = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{shutil.copy(empty_db, root / 'mlflow.db')}"
    proc = run_cli(["--multirun", "env=CartPole", "algorithm=ppo", "seed=1,2,3", "trainer.n_epochs=3", "trainer.eval_after_n_steps=256",
                    "algorithm.n_steps=128", "trainer.n_test_rollouts=2", "trainer.progress_bar=false",
                    f"logger.mlflow.tracking_uri={uri}", f"hydra.sweep.dir={root}/runs"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, uri


def test_plot_three_seeded_runs_into_one_curve_with_band(trained):
    root, uri = trained
    out = root / "plots"
    proc = subprocess.run([sys.executable, str(PLOT), "--tracking-uri", uri, "--experiment", "CartPole", "--agg", "iqm", "--out", str(out)],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "3 run(s) of CartPole: ppo 3"
    assert proc.stdout.splitlines()[-4:] == [str(out / f"eval_mean_reward{suffix}") for suffix in (".png", ".csv", "_final.png", "_final.csv")]
    assert (out / "eval_mean_reward.png").stat().st_size > 10_000
    rows = list(csv.DictReader(open(out / "eval_mean_reward.csv")))
    assert [(r["group"], r["runs_in_group"], r["step"], r["runs_at_step"]) for r in rows] == [("ppo", "3", str(s), "3") for s in (256, 512, 768)]
    client = MlflowClient(uri)
    runs = select_runs(client, experiments=["CartPole"])
    assert sorted(r.data.tags["seed"] for r in runs) == ["1", "2", "3"]
    per_run = np.array([metric_history(client, r.info.run_id, "eval/mean_reward")[1] for r in runs])  # (3 runs, 3 steps)
    s = np.sort(per_run, axis=0)
    np.testing.assert_allclose([float(r["value"]) for r in rows], per_run.mean(axis=0), rtol=1e-5)  # IQM of 3: the mean
    np.testing.assert_allclose([float(r["ci_low"]) for r in rows], s[0], rtol=1e-5)
    np.testing.assert_allclose([float(r["ci_high"]) for r in rows], s[2], rtol=1e-5)
    # the same selection drawn in-process: one line, one band, three runs
    fig = plot_curves(curves_for(client, group_runs(runs), "eval/mean_reward", "iqm", say=lambda _: None), "eval/mean_reward")
    (ax,) = fig.axes
    assert len(ax.lines) == 1 and len(ax.collections) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ppo (3 runs)"]


@pytest.mark.parametrize("args, message", [
    (["--tag", "seed"], "error: --tag 'seed' is not KEY=VALUE; e.g. --tag sweep.study=FetchReach-sac_her or --tag seed=3.\n"),
    (["--tracking-uri", "sqlite:///{tmp}/none.db"], "error: no MLflow store at {tmp}/none.db (tracking URI sqlite:///{tmp}/none.db): "
                                                   "give --tracking-uri or set MLFLOW_TRACKING_URI to the store your runs were logged to.\n"),
], ids=["malformed-tag", "missing-store"])
def test_plot_script_bad_input_exit_2(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, str(PLOT), *args, "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", message.format(tmp=tmp_path))
    assert not (tmp_path / "out").exists() and not (tmp_path / "none.db").exists()
