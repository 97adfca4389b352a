"""Every command-line tool parses with ``hydrarl.cli_args.ArgumentParser``: an option argparse refuses (unknown, a
word for a number, an invalid choice, out of range) is one ``error:`` line naming the option and what is allowed,
pointing at ``<prog> -h``, exit status 2, with no usage block and nothing written."""

from __future__ import annotations

import argparse

import pytest

from hydrarl.analysis.evaluate_agents import main as evaluate_main
from hydrarl.analysis.evaluate_agents import parser as evaluate_parser
from hydrarl.analysis.gait import main as gait_main
from hydrarl.analysis.gait import parser as gait_parser
from hydrarl.analysis.plot import main as plot_main
from hydrarl.cli_args import ArgumentParser, number
from hydrarl.envs.penguinpi.sim_server import main as sim_main
from hydrarl.errors import UserError
from hydrarl.launchers.run_testing import main as matrix_main

TOOLS = {"evaluate": (evaluate_main, "experiment/evaluate.py"), "plot": (plot_main, "experiment/plot.py"),
         "gait": (gait_main, "experiment/plot_gait.py"), "matrix": (matrix_main, "./run_testing.sh"),
         "sim": (sim_main, "python -m hydrarl.envs.penguinpi.sim_server")}


@pytest.mark.parametrize("tool, argv, says", [
    ("evaluate", ["--frames", "3"], "unrecognized arguments: --frames"),
    ("evaluate", ["--episodes", "many"], "argument --episodes: 'many' is not allowed: give an integer >= 1 (episodes per agent)"),
    ("evaluate", ["--checkpoint", "worst"], "argument --checkpoint: invalid choice: 'worst' (choose from 'best', 'last')"),
    ("evaluate", ["--video", "-1"], "argument --video: '-1' is not allowed: give an integer >= 0"),
    ("plot", ["--agg", "median"], "argument --agg: invalid choice: 'median' (choose from 'mean', 'iqm')"),
    ("plot", ["--n-boot", "many"], "argument --n-boot: 'many' is not allowed: give an integer >= 1 (bootstrap resamples)"),
    ("plot", ["--seed", "-1"], "argument --seed: '-1' is not allowed: give an integer >= 0"),
    ("plot", ["--min-runs", "0"], "argument --min-runs: '0' is not allowed: give an integer >= 1"),
    ("gait", ["--speed", "fast"], "argument --speed: 'fast' is not allowed: give a finite number (commanded forward speed in m/s)"),
    ("gait", ["--checkpoint", "worst"], "argument --checkpoint: invalid choice: 'worst'"),
    ("matrix", ["-x"], "unrecognized arguments: -x"),
    ("sim", ["--port", "70000"], "argument --port: '70000' is not allowed: give an integer in 0..65535"),
    ("sim", ["--port", "-1"], "argument --port: '-1' is not allowed: give an integer in 0..65535"),
    ("sim", ["--port", "http"], "argument --port: 'http' is not allowed"),
    ("sim", ["--speedup", "nan"], "argument --speedup: 'nan' is not allowed: give a finite number >= 0"),
    ("sim", ["--speedup", "-1"], "argument --speedup: '-1' is not allowed: give a finite number >= 0"),
    ("sim", ["--seed", "-1"], "argument --seed: '-1' is not allowed: give an integer >= 0"),
    ("sim", ["--prot", "0"], "unrecognized arguments: --prot 0"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_a_refused_option_is_one_error_line_naming_it_and_exit_2(tool, argv, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main, prog = TOOLS[tool]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {says}"), captured.err
    assert captured.err.endswith(f" ({prog} -h lists the options)\n") and captured.err.count("\n") == 1, captured.err
    assert "usage:" not in captured.out + captured.err
    assert list(tmp_path.iterdir()) == []


def test_the_parser_raises_a_user_error_and_help_still_exits_0(capsys):
    parser = ArgumentParser(prog="tool.py")
    parser.add_argument("--n", type=number(int, "things", least=1, most=3))
    with pytest.raises(UserError, match=r"^argument --n: '4' is not allowed: give an integer in 1\.\.3 \(things\) \(tool\.py -h"):
        parser.parse_args(["--n", "4"])
    with pytest.raises(UserError, match=r"^the following arguments are required: x \(tool\.py -h lists the options\)$"):
        sub = ArgumentParser(prog="tool.py")
        sub.add_argument("x")
        sub.parse_args([])
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["-h"])
    assert done.value.code == 0 and "--n" in capsys.readouterr().out


@pytest.mark.parametrize("kind, text, value", [(int, "3", 3), (float, "2.5", 2.5), (float, "-1e3", -1000.0)])
def test_number_accepts_finite_values_in_range(kind, text, value):
    assert number(kind, "x")(text) == value


@pytest.mark.parametrize("kind, text", [(int, "2.5"), (int, "nan"), (float, "inf"), (float, "nan"), (float, "")])
def test_number_refuses_non_numbers_and_non_finite_values(kind, text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not allowed: give"):
        number(kind, "x")(text)


@pytest.mark.parametrize("tool, argv, expected", [
    # the order of the docs' example: plain argparse refused the word after the option
    ("gait", ["run", "--speed", "0.5", "render=record"], {"agent": "run", "render": "render=record", "speed": 0.5}),
    ("gait", ["--speed", "0.5", "run", "render=record"], {"agent": "run", "render": "render=record", "speed": 0.5}),
    ("evaluate", ["a", "--episodes", "20", "b"], {"agents": ["a", "b"], "episodes": 20}),
])
def test_options_may_come_between_positional_words(tool, argv, expected):
    parse = {"gait": gait_parser, "evaluate": evaluate_parser}[tool]
    args = vars(parse().parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def test_a_word_too_many_is_still_refused_and_sub_commands_still_parse():
    with pytest.raises(UserError, match=r"^unrecognized arguments: c \(experiment/plot_gait\.py -h"):
        gait_parser().parse_args(["a", "--speed", "0.5", "b", "c"])
    tool = ArgumentParser(prog="tool.py")
    commands = tool.add_subparsers(dest="command", required=True)
    commands.add_parser("go").add_argument("--fast", action="store_true")
    assert vars(tool.parse_args(["go", "--fast"])) == {"command": "go", "fast": True}
