"""experiment/evaluate.py: its table equals a hand computation on a deterministic controller, the
same command gives the same table, a trained run evaluates to the numbers its own Trainer measured
(normalisation statistics included), Fetch runs report success, ``--env`` plays a run in another env config
as a run of that env would, and bad input exits 2."""

import csv
import json
import shutil
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.vec_env import VecNormalize

from hydrarl.analysis.evaluate_agents import (
    AgentResult,
    across_seeds,
    agent_from_controller,
    agent_from_path,
    env_choice,
    evaluate_agent,
    main,
    make_eval_env,
    unique_labels,
)
from hydrarl.paths import PROJECT_ROOT
from hydrarl.training.evaluation import Episodes
from hydrarl.training.seeding import EVAL_SEED_OFFSET
from hydrarl.training.train import run
from tests.helpers.cli import run_cli
from tests.helpers.compose import compose_cfg, fast_overrides

EVALUATE = PROJECT_ROOT / "experiment" / "evaluate.py"


def hand_returns(seed: int, n: int, action: int = 0) -> list[float]:
    """CartPole-v1 with a fixed action: the first episode from reset(seed=seed), later ones from plain reset()."""
    env = gym.make("CartPole-v1")
    env.reset(seed=seed)
    returns = []
    for _ in range(n):
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        env.reset()
    return returns


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def markdown_rows(text: str) -> dict[str, list[str]]:
    """{agent label: cells} of a markdown table."""
    lines = [line for line in text.splitlines() if line.startswith("|")][2:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return {row[0]: row for row in cells}


def test_table_equals_a_hand_computation_on_the_constant_controller(tmp_path, capsys):
    seed, n = 3, 7
    expected = hand_returns(seed, n)
    assert len(set(expected)) > 1, "episodes should differ, or the check proves little"
    mean, std = float(np.mean(expected)), float(np.std(expected))

    assert main(["--controller", "CartPole/constant", "--episodes", str(n), "--seed", str(seed), "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    (row,) = read_csv(tmp_path / "a" / "table.csv")
    assert row["agent"] == "CartPole/constant" and row["env"] == "CartPole-v1" and row["episodes"] == str(n)
    assert float(row["mean_return"]) == pytest.approx(mean, abs=1e-12)
    assert float(row["std_return"]) == pytest.approx(std, abs=1e-12)
    assert (float(row["min_return"]), float(row["max_return"])) == (min(expected), max(expected))
    assert float(row["mean_length"]) == pytest.approx(mean)  # CartPole pays 1 per step
    assert row["success_rate"] == ""                           # CartPole reports no success
    assert [float(r["return"]) for r in read_csv(tmp_path / "a" / "episodes.csv")] == expected

    markdown = (tmp_path / "a" / "table.md").read_text()
    cells = markdown_rows(markdown)["CartPole/constant"]
    assert cells == ["CartPole/constant", "CartPole-v1", str(n), f"{mean:.2f}", f"{std:.2f}", f"{min(expected):.2f}",
                     f"{max(expected):.2f}", f"{mean:.2f}", ""]
    assert markdown in printed and f"wrote {tmp_path / 'a' / 'table.csv'}" in printed

    # The command line, in its own process, prints and saves the same table.
    proc = subprocess.run([sys.executable, str(EVALUATE), "--controller", "CartPole/constant", "--episodes", str(n),
                           "--seed", str(seed), "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b" / "table.md").read_text() == markdown
    assert markdown in proc.stdout and f"wrote {tmp_path / 'b' / 'table.md'}" in proc.stdout
    assert "[1/1] CartPole/constant on CartPole-v1" in proc.stderr  # progress line


def test_same_seed_same_table_other_seed_other_returns(tmp_path, capsys):
    args = ["--controller", "CartPole/random", "--controller", "Pendulum/random", "--episodes", "5"]
    for name, seed in (("x", "0"), ("y", "0"), ("z", "1")):
        assert main([*args, "--seed", seed, "--out", str(tmp_path / name)]) == 0
    tables = {name: (tmp_path / name / "table.csv").read_text() for name in "xyz"}
    assert tables["x"] == tables["y"]
    returns = {name: [r["return"] for r in read_csv(tmp_path / name / "episodes.csv")] for name in "xz"}
    assert returns["x"] != returns["z"]
    # The random controller's own sampler follows the seed too, not only the env: with the env's
    # seed fixed, two agent seeds act differently.
    agent = agent_from_controller("CartPole/random")
    env_only = [evaluate_agent(agent, 5, 0).episodes.returns for _ in range(2)]
    assert env_only[0] == env_only[1]
    constant = evaluate_agent(agent_from_controller("CartPole/constant"), 5, 0).episodes.returns
    assert env_only[0] != constant


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """A real short train.py run: CartPole, PPO, one epoch."""
    run_dir = tmp_path_factory.mktemp("ppo") / "run"
    proc = run_cli(["env=CartPole", "algorithm=ppo", "seed=4", "trainer.n_epochs=1", "trainer.eval_after_n_steps=256",
                    "algorithm.n_steps=128", "trainer.n_test_rollouts=3", "trainer.progress_bar=false", "logger=[]",
                    f"hydra.run.dir={run_dir}"], cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def trainer_eval(run_dir) -> tuple[dict[str, float], int]:
    """The Trainer's evaluation metrics after epoch 1, and the run's seed."""
    state = json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())
    return {k: v for k, v in state["history"][0].items() if k.startswith("eval/")}, state["seed"]


def test_a_trained_run_evaluates_to_what_its_trainer_measured(ppo_run, tmp_path, capsys):
    measured, seed = trainer_eval(ppo_run)
    eval_seed = seed + EVAL_SEED_OFFSET + 1  # the Trainer's evaluation seed after epoch 1
    out = tmp_path / "out"
    assert main([str(ppo_run), str(ppo_run / "checkpoints" / "last" / "model.zip"), "--episodes", "3",
                 "--seed", str(eval_seed), "--out", str(out)]) == 0
    best, last = read_csv(out / "table.csv")
    assert best["agent"] == "CartPole/ppo seed 4" and last["agent"] == "CartPole/ppo seed 4 (last)"
    assert best["source"] == str(ppo_run / "checkpoints" / "best" / "model.zip")
    for row in (best, last):  # one epoch: best and last hold the same policy
        assert float(row["mean_return"]) == pytest.approx(measured["eval/mean_reward"], abs=1e-9)
        assert float(row["std_return"]) == pytest.approx(measured["eval/std_reward"], abs=1e-9)
        assert float(row["min_return"]) == measured["eval/min_reward"] and float(row["max_return"]) == measured["eval/max_reward"]
    # --stochastic samples from the policy, reproducibly
    stochastic = [main([str(ppo_run), "--episodes", "3", "--stochastic", "--out", str(tmp_path / name)]) for name in ("s1", "s2")]
    assert stochastic == [0, 0]
    assert (tmp_path / "s1" / "table.csv").read_text() == (tmp_path / "s2" / "table.csv").read_text()


def test_a_fetch_run_reports_success_and_uses_its_normalisation(tmp_path, capsys):
    # FetchReachDense: a goal env with is_success and continuous returns, so a missing
    # vecnormalize.pkl would change the numbers.
    run_dir = tmp_path / "fetch"
    result = run(compose_cfg(["env=FetchReachDense", "algorithm=sac_her", "seed=2", "trainer.n_epochs=1",
                              "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=3", "trainer.progress_bar=false",
                              "logger=[]", *fast_overrides("sac_her")]), run_dir)
    assert result.status == "completed" and (run_dir / "checkpoints" / "best" / "vecnormalize.pkl").is_file()
    measured, seed = trainer_eval(run_dir)
    out = tmp_path / "out"
    assert main([str(run_dir), "--controller", "FetchReach/random", "--controller", "CartPole/constant", "--episodes", "3",
                 "--seed", str(seed + EVAL_SEED_OFFSET + 1), "--out", str(out)]) == 0
    fetch, random_fetch, cartpole = read_csv(out / "table.csv")
    assert fetch["env"] == "FetchReachDense-v4"
    assert float(fetch["mean_return"]) == pytest.approx(measured["eval/mean_reward"], abs=1e-9)
    assert float(fetch["success_rate"]) == measured["eval/success_rate"]
    assert random_fetch["success_rate"] != "" and 0 <= float(random_fetch["success_rate"]) <= 1
    assert cartpole["success_rate"] == ""
    rows = markdown_rows((out / "table.md").read_text())
    assert rows["FetchReach/random"][-1] != "" and rows["CartPole/constant"][-1] == ""
    # without the checkpoint's statistics the same policy acts differently
    agent = agent_from_path(run_dir)
    agent.checkpoint = None
    assert evaluate_agent(agent, 3, seed + EVAL_SEED_OFFSET + 1).episodes.returns != [
        float(r["return"]) for r in read_csv(out / "episodes.csv") if r["agent"] == fetch["agent"]]


def bad_inputs(ppo_run, tmp_path):
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    no_best = tmp_path / "no_best"
    shutil.copytree(ppo_run, no_best)
    shutil.rmtree(no_best / "checkpoints" / "best")
    broken = tmp_path / "broken"
    shutil.copytree(ppo_run, broken)
    (broken / "checkpoints" / "best" / "model.zip").write_text("not a zip")
    stray = tmp_path / "stray" / "model.zip"
    stray.parent.mkdir()
    shutil.copy(ppo_run / "checkpoints" / "best" / "model.zip", stray)
    return [
        ([str(tmp_path / "nowhere")], "is not a run directory"),
        ([str(not_a_run)], "is not a run directory"),
        ([str(stray)], "no run directory above this model"),
        ([str(no_best)], "no checkpoints/best/model.zip"),
        ([str(broken)], "cannot be loaded as PPO"),
        (["--controller", "CartPole"], "give <Env>/<algo>"),
        (["--controller", "Nope/random"], "env=Nope is unknown"),
        (["--controller", "CartPole/nope"], "algorithm=nope is unknown"),
        (["--controller", "CartPole/ppo"], "not a controller"),
        (["--controller", "CartPole/random env.kwargs.bogus=1"], "do not apply"),
        (["--controller", "Bumps/bumps_oracle"], "privileged=true"),
        ([str(ppo_run), "--env", "Pendulum"], "takes observation space"),
        ([str(ppo_run), "--env", "Nope"], "--env 'Nope': env=Nope is unknown. Available env options: Ant, BumpTarget, Bumps,"),
        ([str(ppo_run), "--env", "CartPole seed=3"], "seed=3 is not an override of the env; give env.KEY=VALUE"),
        ([str(ppo_run), "--env", "CartPole env.kwargs.bogus=1"], "the overrides env.kwargs.bogus=1 do not apply"),
        (["--controller", "CartPole/random", "--env", "CartPole"], "a --controller names its env"),
        (["--controller", "CartPole/random", "--episodes", "0"], "argument --episodes: '0' is not allowed: give an integer >= 1"),
        ([], "nothing to evaluate"),
    ]


def test_bad_input_is_one_line_and_exit_2(ppo_run, tmp_path, capsys):
    for argv, needle in bad_inputs(ppo_run, tmp_path):
        out = tmp_path / "out"
        assert main([*argv, "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (argv, err)
        assert not out.exists()
    proc = subprocess.run([sys.executable, str(EVALUATE), str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'nowhere'} is not a run directory (a directory with config.yaml) or a model.zip inside one."


def test_video_replays_the_first_episodes_of_the_table(tmp_path, capsys):
    """--video 2: an MP4 with one frame after the reset and one per step of the table's first two episodes."""
    import imageio.v2 as imageio

    seed = 3
    assert main(["--controller", "CartPole/constant", "--episodes", "4", "--seed", str(seed), "--video", "2", "--out", str(tmp_path)]) == 0
    (video,) = (tmp_path / "videos").glob("*.mp4")
    assert f"wrote {video}" in capsys.readouterr().out
    lengths = [int(r["length"]) for r in read_csv(tmp_path / "episodes.csv")]
    assert lengths[:2] == [int(r) for r in hand_returns(seed, 2)]
    reader = imageio.get_reader(video)
    assert reader.get_meta_data()["fps"] == gym.make("CartPole-v1").metadata["render_fps"]
    assert sum(1 for _ in reader) == 1 + lengths[0] + lengths[1]
    assert main(["--controller", "CartPole/constant", "--episodes", "2", "--video", "3", "--out", str(tmp_path / "x")]) == 2


def test_controller_overrides_reach_its_env(tmp_path, capsys):
    """'Env/algo key=value': the oracle gets the privileged bumps observation it needs and succeeds."""
    assert main(["--controller", "Bumps/bumps_oracle env.kwargs.privileged=true", "--episodes", "3", "--out", str(tmp_path)]) == 0
    with (tmp_path / "table.csv").open() as f:
        row = next(csv.DictReader(f))
    assert row["agent"] == "Bumps/bumps_oracle env.kwargs.privileged=true"
    assert float(row["success_rate"]) == 1.0 and float(row["mean_return"]) == 1.0


@pytest.fixture(scope="module")
def bumps_run(tmp_path_factory):
    """A real short run on Bumps (PPO, one epoch) with observation normalisation: vecnormalize.pkl in its checkpoints."""
    run_dir = tmp_path_factory.mktemp("bumps") / "run"
    result = run(compose_cfg(["env=Bumps", "algorithm=ppo", "seed=1", "env.normalize={norm_obs: true}", "trainer.n_epochs=1",
                              "trainer.eval_after_n_steps=128", "algorithm.n_steps=64", "trainer.n_test_rollouts=2",
                              "trainer.progress_bar=false", "logger=[]"]), run_dir)
    assert result.status == "completed" and (run_dir / "checkpoints" / "best" / "vecnormalize.pkl").is_file()
    return run_dir


def test_env_plays_a_run_in_another_env_config(bumps_run, tmp_path, capsys):
    """--env BumpsTest: the Bumps policy, with its checkpoint's statistics, plays conf/env/BumpsTest.yaml exactly as
    a run whose config held that env would; the row says so; --video records the episodes played there."""
    import imageio.v2 as imageio

    out = tmp_path / "on_test"
    assert main([str(bumps_run), "--env", "BumpsTest", "--episodes", "3", "--video", "1", "--out", str(out)]) == 0
    (row,) = read_csv(out / "table.csv")
    assert row["agent"] == "Bumps/ppo seed 1 (on BumpsTest)" and row["env"] == "BumpsTest-v0"
    assert row["source"] == str(bumps_run / "checkpoints" / "best" / "model.zip")
    assert "Bumps/ppo seed 1 (on BumpsTest)" in markdown_rows((out / "table.md").read_text())
    assert "[1/1] Bumps/ppo seed 1 (on BumpsTest) on BumpsTest-v0" in capsys.readouterr().err

    # The same run with BumpsTest (and its own normalize setting) written into its config.yaml, evaluated as usual.
    moved = tmp_path / "moved"
    shutil.copytree(bumps_run, moved)
    cfg = OmegaConf.load(moved / "config.yaml")
    cfg.env = OmegaConf.merge(env_choice("BumpsTest").cfg, {"normalize": cfg.env.normalize})
    OmegaConf.save(cfg, moved / "config.yaml")
    assert main([str(moved), "--episodes", "3", "--out", str(tmp_path / "moved_out")]) == 0
    (own,) = read_csv(tmp_path / "moved_out" / "table.csv")
    assert own["env"] == "BumpsTest-v0"
    assert [(r["return"], r["length"]) for r in read_csv(out / "episodes.csv")] == [
        (r["return"], r["length"]) for r in read_csv(tmp_path / "moved_out" / "episodes.csv")]

    # BumpsTest's config normalises nothing; the run's statistics still scale the observations.
    env = make_eval_env(agent_from_path(bumps_run, env=env_choice("BumpsTest")), 0)
    saved = load_from_pkl(bumps_run / "checkpoints" / "best" / "vecnormalize.pkl")
    assert isinstance(env, VecNormalize) and env.obs_rms.mean.any()
    assert np.array_equal(env.obs_rms.mean, saved.obs_rms.mean) and np.array_equal(env.obs_rms.var, saved.obs_rms.var)
    env.close()

    (video,) = (out / "videos").glob("*.mp4")
    lengths = [int(r["length"]) for r in read_csv(out / "episodes.csv")]
    assert sum(1 for _ in imageio.get_reader(video)) == 1 + lengths[0]


def test_env_with_other_spaces_names_the_run_and_both_spaces(ppo_run, tmp_path, capsys):
    def one_line(space) -> str:
        return " ".join(str(space).split())

    assert main([str(ppo_run), "--env", "Pendulum", "--out", str(tmp_path / "out")]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"error: --env Pendulum: {ppo_run / 'checkpoints' / 'best' / 'model.zip'} (CartPole/ppo seed 4) ")
    cartpole, pendulum = gym.make("CartPole-v1"), gym.make("Pendulum-v1")
    assert (f"takes observation space {one_line(cartpole.observation_space)} and action space {cartpole.action_space}, "
            f"but Pendulum has observation space {one_line(pendulum.observation_space)} and action space {pendulum.action_space}") in err
    assert not (tmp_path / "out").exists()


def test_repeated_labels_are_made_unique():
    agents = unique_labels([agent_from_controller("CartPole/random") for _ in range(3)] + [agent_from_controller("CartPole/constant")])
    assert [a.label for a in agents] == ["CartPole/random", "CartPole/random #2", "CartPole/random #3", "CartPole/constant"]


def test_seeds_of_one_agent_are_aggregated_with_rliable():
    def result(label: str, returns: list[float], successes: list[float]) -> AgentResult:
        agent = agent_from_controller("CartPole/random")
        agent.label = label
        return AgentResult(agent, Episodes(returns, [10] * len(returns), successes), 1.0)

    results = [result("A seed 1", [1, 3], [1, 0]), result("A seed 2", [5, 5], [1, 1]), result("A seed 3", [0, 2], [0, 0]),
               result("B seed 1 (on X)", [0, 0], [0, 0]), result("B seed 2 (on X)", [4, 4], [1, 0])]
    lines = across_seeds(results, reps=200)
    # per seed: A returns 2, 5, 1 (IQM of 3 = mean 2.67), B 0, 4; P(A > B): 2>0, 5>0, 1>0, 5>4, and 2, 1 < 4: 4 of 6
    assert lines[1].startswith("mean return of each seed: IQM and mean over runs")
    assert lines[4].startswith("| A        |    3 | 2.67 [") and lines[5].startswith("| B (on X) |    2 | 2 [")
    assert lines[6].startswith("P(A > B (on X)) = 0.667 [")
    assert lines[8].startswith("success rate of each seed") and lines[13].startswith("P(A > B (on X)) = 0.667 [")
    assert across_seeds(results[:1]) == [] and across_seeds([results[0], results[3]]) == []  # one seed each: nothing


def test_env_choice_takes_overrides_of_the_env():
    """--env 'Cassie env.kwargs.speeds=[...]': a Cassie policy tested at commands it was not trained on (the speed
    command is unbounded in the observation space, so the spaces still match)."""
    choice = env_choice("Cassie  env.kwargs.speeds=[0.2,0.8]")
    assert choice.name == "Cassie env.kwargs.speeds=[0.2,0.8]" and list(choice.cfg.kwargs.speeds) == [0.2, 0.8]
    assert choice.cfg.max_episode_steps == 400
