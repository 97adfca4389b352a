"""Cassie episode diagnostics reaching the tools: evaluation's eval/forward_speed and eval/forward_distance, and
experiment/plot_gait.py on the real Cassie env: the CSV is the episode the env played, the video has a
frame per step, a trained run's actions reach the plot, and bad input is one line with exit status 2."""

from __future__ import annotations

import csv

import imageio.v2 as imageio
import numpy as np
import pytest

from hydrarl.analysis.gait import main, parser, split_render
from hydrarl.envs.cassie.env import CassieEnv
from hydrarl.errors import UserError
from tests.helpers.cli import run_cli
from tests.helpers.compose import compose_cfg

pytestmark = pytest.mark.usefixtures("menagerie")  # (tests/conftest.py) skip without the model, point at it


def read_rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_zero_action_episode_is_written_as_played(tmp_path, capsys, recwarn):
    assert main(["--seed", "3", "--speed", "0.7", "--out", str(tmp_path)]) == 0
    assert not [w for w in recwarn if "maximum and minimum values are equal" in str(w.message)]  # the env is as trained
    rows = read_rows(tmp_path / "gait.csv")
    # The same episode played directly: zero residual action from reset(seed=3) with the speed fixed.
    env = CassieEnv()
    env.reset(seed=3, options={"speed": 0.7})
    heights, done = [], False
    while not done:
        _, _, terminated, truncated, info = env.step(np.zeros(10))
        heights.append(info["pelvis_height"])
        done = terminated or truncated or len(heights) == 400
    env.close()
    assert len(rows) == len(heights) and 80 < len(rows) < 400  # stands a few seconds, then falls (terminated)
    np.testing.assert_allclose([float(r["pelvis_height"]) for r in rows], heights, rtol=1e-5)
    assert {float(r["speed_command"]) for r in rows} == {0.7}
    assert float(rows[39]["time_s"]) == pytest.approx(1.0)  # 40 steps per second
    assert all(float(r[f"action/{j}"]) == 0.0 for r in rows for j in ("L knee", "R foot"))
    assert (tmp_path / "gait.png").stat().st_size > 20_000
    assert f"{len(rows)} steps" in capsys.readouterr().out


def test_render_record_writes_a_frame_per_step(tmp_path):
    assert main(["render=record", "--steps", "12", "--out", str(tmp_path)]) == 0
    steps = len(read_rows(tmp_path / "gait.csv"))
    assert steps == 12  # --steps lowers the time limit (the zero action stands longer than that)
    reader = imageio.get_reader(tmp_path / "gait.mp4")
    assert reader.count_frames() == steps + 1  # the reset frame, then one per step
    assert reader.get_meta_data()["fps"] == pytest.approx(40)


def test_a_trained_run_is_played_with_its_actions(tmp_path, capsys):
    run_dir = tmp_path / "run"
    proc = run_cli(["env=Cassie", "algorithm=ppo_cassie", "algorithm.n_steps=64", "trainer.n_epochs=1",
                    "trainer.eval_after_n_steps=64", "trainer.n_test_rollouts=1", "trainer.progress_bar=false",
                    "logger=[]", "seed=0", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    capsys.readouterr()
    assert main([str(run_dir), "--out", str(tmp_path / "gait")]) == 0
    gait = capsys.readouterr().out.splitlines()[1]  # the line after the title
    assert gait.startswith("steps L/R ") and "symmetry index: step length " in gait
    assert float(gait.rpartition("mirror gap RMS ")[2]) > 0  # an untrained network is not its own mirror image
    rows = read_rows(tmp_path / "gait" / "gait.csv")
    actions = np.array([[float(r[k]) for k in r if k.startswith("action/")] for r in rows])
    assert actions.shape[1] == 10 and np.abs(actions).max() > 1e-3  # the policy's deterministic actions, not zeros


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    pendulum = tmp_path / "pendulum"
    proc = run_cli(["env=Pendulum", "algorithm=random", "trainer.n_epochs=1", "trainer.eval_after_n_steps=10",
                    "trainer.n_test_rollouts=1", "trainer.progress_bar=false", "logger=[]", f"hydra.run.dir={pendulum}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for argv, needle in [([str(pendulum)], "plot_gait.py plays Cassie episodes"), ([str(tmp_path / "nowhere")], "not a run directory"),
                         (["--env", "Nope"], "--env 'Nope': env=Nope is unknown. Available env options: Ant,"), (["--seed", "-1"], "argument --seed: '-1' is not allowed"),
                         (["--steps", "0"], "argument --steps: '0' is not allowed")]:
        out = tmp_path / "out"
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (argv, err)
        assert not out.exists()


def test_evaluation_logs_the_episodes_forward_speed_and_distance():
    """info["episode_metrics"] reaches the Trainer's evaluation as eval/forward_speed and eval/forward_distance:
    the mean over episodes of each episode's mean pelvis x-velocity and x-displacement."""
    from hydrarl.envs.factory import make_vec_env
    from hydrarl.training.evaluation import evaluate, run_episodes

    cfg = compose_cfg(["env=Cassie", "algorithm=constant", "env.normalize=null", "env.max_episode_steps=30"]).env
    speeds = []
    env = make_vec_env(cfg, seed=5, n_envs=1, training=False)

    class Zero:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros((1, 10)), state

    def on_step(actions, infos):
        speeds.append(float(infos[0]["pelvis_speed"]))

    episodes = run_episodes(Zero(), env, 2, seed=5, on_step=on_step)
    assert episodes.lengths == [30, 30]
    per_episode = [np.mean(speeds[:30]), np.mean(speeds[30:])]
    np.testing.assert_allclose(episodes.extras["forward_speed"], per_episode, rtol=1e-9)
    assert episodes.extras["forward_distance"][0] == pytest.approx(np.sum(speeds[:30]) * 0.025, abs=0.01)
    metrics = evaluate(Zero(), env, 2, seed=5)
    assert metrics["eval/forward_speed"] == pytest.approx(np.mean(per_episode), rel=1e-9)
    env.close()


@pytest.mark.parametrize("duration, tolerance, walked", [(0.75, 10.0, True), (0.75, 0.01, False), (1.0, 10.0, False)])
def test_walking_on_command_is_the_episodes_success(duration, tolerance, walked):
    """eval/recent_speed is each episode's mean pelvis x-velocity over its last `window` seconds, eval/speed_error its
    distance to the command, and eval/success_rate the share of episodes that lasted `duration` with that error
    within `tolerance` (the zero action does not walk at the command: error > 0; 30 steps are 0.75 s)."""
    from hydrarl.envs.factory import make_vec_env
    from hydrarl.training.evaluation import evaluate, run_episodes

    check = f"{{duration: {duration}, window: 0.25, tolerance: {tolerance}}}"
    cfg = compose_cfg(["env=Cassie", "algorithm=constant", "env.normalize=null", "env.max_episode_steps=30",
                       "env.kwargs.speeds=[0.5]", f"env.kwargs.command_check={check}"]).env
    env = make_vec_env(cfg, seed=5, n_envs=1, training=False)
    speeds = []

    class Zero:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros((1, 10)), state

    episodes = run_episodes(Zero(), env, 2, seed=5, on_step=lambda actions, infos: speeds.append(infos[0]["pelvis_speed"]))
    recent = [np.mean(speeds[20:30]), np.mean(speeds[50:60])]  # 0.25 s = the last 10 steps of each
    np.testing.assert_allclose(episodes.extras["recent_speed"], recent, rtol=1e-9)
    np.testing.assert_allclose(episodes.extras["speed_error"], np.abs(np.subtract(recent, 0.5)), rtol=1e-9)
    assert min(episodes.extras["speed_error"]) > 0.3
    assert episodes.successes == [float(walked)] * 2
    assert evaluate(Zero(), env, 2, seed=5)["eval/success_rate"] == float(walked)
    env.close()


def test_speed_tracking_averages_the_last_window_across_the_ring():
    from hydrarl.envs.cassie.tracking import CommandCheck, SpeedTracking

    tracking = SpeedTracking(dt=0.5, check=CommandCheck(duration=10.0, window=2.0, tolerance=0.5))
    tracking.reset(x=1.0)
    assert tracking.metrics() == {"forward_speed": 0.0, "forward_distance": 0.0, "recent_speed": 0.0, "speed_error": 0.0}
    for step in range(1, 21):  # speeds 1..20 m/s, 4 of them per 2-s window
        tracking.update(vx=float(step), x=1.0 + step, command=18.0)
        assert tracking.on_command() == (step == 20)  # 10 s reached at step 20, where the last 4 average 18.5
    assert tracking.metrics() == {"forward_speed": 10.5, "forward_distance": 20.0, "recent_speed": 18.5, "speed_error": 0.5}


@pytest.mark.parametrize("argv, agent, record", [
    ([], None, False), (["render=record"], None, True), (["run", "render=record"], "run", True),
    (["render=none", "run"], "run", False), (["run"], "run", False),
])
def test_the_positional_words_are_a_run_and_a_render_in_either_order(argv, agent, record):
    args = parser().parse_args(argv)
    assert split_render(args) is record and args.agent == agent


@pytest.mark.parametrize("argv, says", [
    (["render=video"], "render=video is unknown: render must be none or record"),
    (["run", "render=video"], "render=video is unknown: render must be none or record"),
    (["render=record", "render=none"], "render=record and render=none: give render once"),
    (["run", "other"], "one run at a time: run and other given"),
])
def test_a_bad_render_word_is_a_user_error_naming_what_is_allowed(argv, says, tmp_path, capsys):
    with pytest.raises(UserError, match=says):
        split_render(parser().parse_args(argv))
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {says}") and not (tmp_path / "out").exists()
