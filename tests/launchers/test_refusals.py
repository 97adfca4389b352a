"""The function tier's pair check: only an algorithm that cannot act in an env is a refusal, and the refusals
must be the expected ones (conf/refused_pairs.yaml); a broken config, a changed refusal, an env no algorithm
accepts fail the tier with the pair and the reason on the console. A bar whose pair cannot be built fails.
And run_testing's options: each bad value is one error line, exit status 2, before any job."""

import json

import pytest
import yaml

from hydrarl.config.compose import available
from hydrarl.launchers.matrix import select_pairs
from hydrarl.launchers.pairs import (
    ENV_KINDS,
    FAILED,
    REFUSALS_FILE,
    REFUSED,
    VALID,
    ExpectedRefusals,
    PairCheck,
    check_pairs,
    pair_problems,
)
from hydrarl.launchers.run_testing import main
from hydrarl.launchers.scheduler import Scheduler
from tests.helpers.disks import readonly_dir


def tier(tmp_path, *args: str) -> tuple[int, dict | None]:
    """``./run_testing.sh -t function -p 1 -s 0 <args>`` into ``tmp_path/out``: exit status and verdict."""
    out = tmp_path / "out"
    code = main(["-t", "function", "-p", "1", "-s", "0", "-o", str(out), *args])
    verdict = out / "verdict.json"
    return code, json.loads(verdict.read_text()) if verdict.exists() else None


def refusals_without(tmp_path, algorithm: str, env: str):
    """A copy of the expected refusals in which the group listing ``algorithm`` no longer lists ``env``."""
    groups = yaml.safe_load(REFUSALS_FILE.read_text())
    group = next(g for g in groups if algorithm in g["algorithms"] and isinstance(g["envs"], list) and env in g["envs"])
    group["envs"].remove(env)
    path = tmp_path / "refused_pairs.yaml"
    path.write_text(yaml.safe_dump(groups))
    return path


def test_a_broken_value_in_an_algorithm_config_fails_the_tier_with_the_pair_and_the_reason(tmp_path, capsys):
    """Issue 25: sac's learning_rate not a number made every sac pair a 'refusal' and the tier PASSED."""
    code, verdict = tier(tmp_path, "-f", "Pendulum/sac", "-O", "algorithm.learning_rate=not_a_number")
    out = capsys.readouterr().out
    assert code == 1 and not verdict["passed"]
    line = next(x for x in out.splitlines() if x.startswith("FAIL Pendulum/sac:"))
    assert "cannot be built" in line and "learning_rate" in line and "not_a_number" in line
    assert verdict["pairs_not_built"]["Pendulum/sac"]["outcome"] == FAILED
    assert verdict["jobs"] == []


def test_a_renamed_constructor_argument_fails_the_tier(tmp_path, capsys):
    code, verdict = tier(tmp_path, "-f", "Pendulum/td3", "-O", "~algorithm.learning_rate", "-O", "+algorithm.lr=0.001")
    out = capsys.readouterr().out
    assert code == 1
    for pair in ("Pendulum/td3", "Pendulum/td3_her"):
        line = next(x for x in out.splitlines() if x.startswith(f"FAIL {pair}:"))
        assert "has no argument lr" in line
    assert f"edit {REFUSALS_FILE}" in out


def test_a_refusal_the_file_does_not_list_fails_the_tier_and_names_the_file(tmp_path, capsys):
    refusals = refusals_without(tmp_path, "sac", "CartPole")
    code, verdict = tier(tmp_path, "-f", "CartPole/sac", "-r", str(refusals))
    out = capsys.readouterr().out
    assert code == 1
    line = next(x for x in out.splitlines() if x.startswith("FAIL CartPole/sac:"))
    assert f"refused, but {refusals} expects it to train" in line and "supports Box actions" in line
    assert verdict["pair_problems"] == [line.removeprefix("FAIL ")]  # CartPole/sac_her is still refused as listed


def test_the_current_tree_refuses_exactly_the_listed_pairs_of_a_filter(tmp_path, capsys):
    """With the repository's file, the same selection has no problem: nothing to train is exit 2, not a failure."""
    code, verdict = tier(tmp_path, "-f", "CartPole/sac")
    captured = capsys.readouterr()
    assert code == 2 and verdict is None
    assert "0 problem(s)" in captured.out
    assert captured.err.strip() == (f"error: no pair -f selects can be built: "
                                    f"CartPole/sac, CartPole/sac_her are refused, as {REFUSALS_FILE} expects")


def test_a_listed_pair_that_the_factory_builds_is_reported_for_removal(tmp_path):
    groups = yaml.safe_load(REFUSALS_FILE.read_text()) + [{"reason": "a wrong entry", "algorithms": ["a2c"], "envs": ["CartPole"]}]
    path = tmp_path / "refused_pairs.yaml"
    path.write_text(yaml.safe_dump(groups))
    checks = check_pairs([("CartPole", "a2c"), ("CartPole", "sac")])
    assert [c.outcome for c in checks.values()] == [VALID, REFUSED]
    assert pair_problems(checks, ExpectedRefusals.load(path)) == [
        f"CartPole/a2c: now built by the agent factory, but {path} lists it as refused (a wrong entry); "
        "remove it there so the tier trains it"]


def test_an_env_no_algorithm_accepts_is_one_named_failure(tmp_path, capsys):
    code, verdict = tier(tmp_path, "-f", "CartPole/", "-O", "env.policy=NoSuchPolicy")
    out = capsys.readouterr().out
    assert code == 1
    fails = [x for x in out.splitlines() if x.startswith("FAIL ") and ": " in x and "problem(s)" not in x]
    assert len(fails) == 1, fails
    assert fails[0].startswith("FAIL env=CartPole: no algorithm accepts it (")
    assert len(verdict["pairs_not_built"]) == len(available("algorithm"))  # each pair's reason is kept there


def test_an_algorithm_no_env_accepts_is_one_line_and_other_problems_keep_theirs():
    """Checked in every env, an algorithm none of them builds is one line; a lone problem stays per pair."""
    envs = available("env")
    checks = {(env, "sac"): PairCheck(FAILED, f"algorithm=sac cannot be built for env={env}: bad") for env in envs}
    checks |= {(env, "ppo"): PairCheck(VALID) for env in envs}
    checks[("Pendulum", "ppo")] = PairCheck(FAILED, "algorithm=ppo cannot be built for env=Pendulum: bad")
    expected = ExpectedRefusals(REFUSALS_FILE, {})
    problems = pair_problems(checks, expected)
    assert len(problems) == 2
    assert problems[0].startswith(f"algorithm=sac: no env accepts it ({len(envs)} of its {len(envs)} pairs fail")
    assert problems[1] == "Pendulum/ppo: cannot be built: algorithm=ppo cannot be built for env=Pendulum: bad"


@pytest.mark.parametrize(("group", "says"), [
    ({"reason": "r", "algorithms": ["sac"], "envs": ["Cartpole"]}, "env=Cartpole is not in conf/env/"),
    ({"reason": "r", "algorithms": ["sacc"], "envs": "all"}, "algorithm=sacc is not in conf/algorithm/"),
    ({"reason": "r", "algorithms": ["sac"]}, "give the keys reason, algorithms, envs"),
    ({"reason": "r", "algorithms": ["sac"], "envs": "everything"}, "envs is a list of env names or all"),
])
def test_a_bad_refusals_file_is_one_error_line_and_exit_2(tmp_path, capsys, group, says):
    path = tmp_path / "refused_pairs.yaml"
    path.write_text(yaml.safe_dump([group]))
    code, verdict = tier(tmp_path, "-f", "CartPole/a2c", "-r", str(path))
    err = capsys.readouterr().err
    assert code == 2 and verdict is None
    assert err.startswith(f"error: expected refusals {path}, group 1: ") and says in err and len(err.splitlines()) == 1


def write_bar(directory, name, overrides=()):
    path = directory / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"total_runs": 2, "succ_runs": 1, "metric": "eval/mean_reward", "value": -1e9,
                                    "max_steps": 400, "eval_after_n_steps": 200, "overrides": ["logger=[]", *overrides]}))


def test_a_bar_whose_pair_cannot_be_built_fails_and_starts_no_run(tmp_path, capsys):
    bars = tmp_path / "bars"
    write_bar(bars, "CartPole/sac")                                                 # refused: Discrete actions
    write_bar(bars, "Pendulum/sac", ["algorithm.learning_rate=not_a_number"])       # a broken value
    code = main(["-t", "performance", "-p", "1", "-s", "0", "-b", str(bars), "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    verdict = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert [(v["bar"], v["passed"], v["runs"]) for v in verdict["bars"]] == [("CartPole/sac", False, []), ("Pendulum/sac", False, [])]
    assert verdict["bars"][0]["cannot_build"].startswith("refused: algorithm=sac (SAC) cannot act in env=CartPole")
    assert verdict["bars"][1]["cannot_build"].startswith("failed: ") and "not_a_number" in verdict["bars"][1]["cannot_build"]
    assert (tmp_path / "out" / "test_cmds.txt").read_text() == ""
    assert any(x.startswith("FAIL Pendulum/sac: its pair cannot be built, no run started: failed: ") for x in out.splitlines())


# -- options (issue 17) -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["-p", "0"], "argument -p: '0' is not allowed: give an integer >= 1 (the most jobs at once)"),
    (["-p", "-2"], "argument -p: '-2' is not allowed: give an integer >= 1"),
    (["-p", "two"], "argument -p: 'two' is not allowed: give an integer >= 1"),
    (["-s", "-1"], "argument -s: '-1' is not allowed: give a finite number >= 0 (seconds between launches)"),
    (["-s", "nan"], "argument -s: 'nan' is not allowed: give a finite number >= 0"),
    (["-m", "-5"], "argument -m: '-5' is not allowed: give an integer >= 0 (MB of free GPU memory"),
    (["-g", "-1"], "-g '-1' is not allowed: give GPU indices (integers >= 0)"),
    (["-t", "speed"], "argument -t: invalid choice: 'speed'"),
    (["-O", "algorithm.gamma=0.9,0.99"], "argument -O: 'algorithm.gamma=0.9,0.99' is not allowed: one value"),
    (["-O", "hydra.run.dir=x"], "argument -O: 'hydra.run.dir=x' is not allowed"),
    (["-O", "algorithm.gamma=["], "argument -O: 'algorithm.gamma=[' is not an override"),
    (["-t", "performance", "-b", "no_such_folder"], "-b no_such_folder: not a folder of performance bars"),
    (["--nope"], "unrecognized arguments: --nope (./run_testing.sh -h lists the options)"),
    (["-t", "function", "-f", "NoSuchPair"], "no env x algorithm pair matches -f 'NoSuchPair'"),
    (["-t", "performance", "-f", "NoSuchPair"], "no performance bar matches -f 'NoSuchPair'; bars: "),
])
def test_each_bad_option_is_one_error_line_and_exit_2_before_any_output(tmp_path, capsys, args, says):
    out = tmp_path / "out"
    assert main([*args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("tier_name, pair", [("function", "CartPole/a2c"), ("performance", "Pendulum/sac")])
def test_an_output_folder_that_cannot_be_written_is_exit_2_before_any_job(tmp_path, capsys, tier_name, pair):
    with readonly_dir(tmp_path / "ro") as ro:
        assert main(["-t", tier_name, "-f", pair, "-o", str(ro / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: -o={ro / 'out'} cannot be written (") and len(captured.err.splitlines()) == 1
    assert "job(s)" not in captured.out and "Traceback" not in captured.err


def test_the_scheduler_refuses_no_process_at_all():
    with pytest.raises(ValueError, match="max_procs >= 1"):
        Scheduler(max_procs=0, say=lambda m: None)


def test_the_tier_trains_the_jax_agents_on_one_env_of_each_kind_unless_a_pair_is_named():
    """sbx's agents (SB3's algorithms on JAX) run on ENV_KINDS only; the torch agents on every env; -f Env/algo, the
    whole name, selects any pair."""
    every = select_pairs(None)
    assert ("Ant", "sac") in every and ("Pendulum", "sbx_sac") in every and ("FetchReach", "sbx_sac_her") in every
    assert ("Ant", "sbx_sac") not in every and ("FetchPush", "sbx_sac_her") not in every
    assert {env for env, algorithm in every if algorithm.startswith("sbx_")} == set(ENV_KINDS)
    assert select_pairs("Ant/sbx_sac") == [("Ant", "sbx_sac")]
    assert ("Ant", "sbx_sac") not in select_pairs("Ant/")
