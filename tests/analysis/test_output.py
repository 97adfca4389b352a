"""Where the analysis tools write: a read-only --out is refused before any episode is played (exit 2, one
line), and a disk that fills up while the results are written is one line too, with the table already shown."""

from __future__ import annotations

import time

import pytest

from hydrarl.analysis.evaluate_agents import main as evaluate_main
from hydrarl.analysis.gait import main as gait_main
from hydrarl.analysis.plot import main as plot_main
from tests.helpers.disks import readonly_dir, small_disk


def _refused(ro, err: str) -> None:
    lines = err.strip().splitlines()
    assert lines == [f"error: --out={ro} cannot be written (Read-only file system); choose a folder you can write to, with free space."], lines


@pytest.mark.parametrize("tool", ["evaluate", "gait"])
def test_a_read_only_out_is_refused_before_the_episodes(tmp_path, capsys, menagerie, tool):
    with readonly_dir(tmp_path / "ro") as ro:
        started = time.perf_counter()
        if tool == "evaluate":  # 10,000 episodes would take minutes: refused at once
            code = evaluate_main(["--controller", "CartPole/random", "--episodes", "10000", "--out", str(ro)])
        else:
            code = gait_main(["--out", str(ro)])
        seconds = time.perf_counter() - started
    assert code == 2
    captured = capsys.readouterr()
    _refused(ro, captured.err)
    assert "episodes per agent" not in captured.out and "steps" not in captured.out
    assert seconds < 20


def test_a_full_disk_while_writing_the_tables_is_one_line_after_the_table(tmp_path, capsys):
    with small_disk(tmp_path / "disk", 4) as disk:  # one 4 KiB page: table.md fits, table.csv does not
        code = evaluate_main(["--controller", "CartPole/constant", "--episodes", "2", "--out", str(disk.path)])
    assert code == 2
    captured = capsys.readouterr()
    assert "| CartPole/constant |" in captured.out  # the results are not lost
    assert captured.err.strip().splitlines()[1:] == [
        f"error: --out={tmp_path / 'disk'} cannot be written (No space left on device); choose a folder you can write to, with free space."]


@pytest.mark.parametrize("tool, argv, needle", [
    ("evaluate", ["--controller", ""], "error: --controller : give <Env>/<algo>, e.g. CartPole/random."),
    ("evaluate", ["--controller", "CartPole/random", "--out", ""], "argument --out: give a folder path"),
    ("gait", ["--speed", "nan"], "error: argument --speed: 'nan' is not allowed: give a finite number (commanded forward speed in m/s)"),
    ("gait", ["--env", ""], "error: --env '': env= is unknown. Available env options: Ant, "),
    ("gait", ["--out", " "], "argument --out: give a folder path"),
    ("plot", ["--tracking-uri", ""], "error: --tracking-uri is empty"),
    ("plot", ["--out", ""], "argument --out: give a folder path"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_empty_and_non_finite_values_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, tool, argv, needle):
    monkeypatch.chdir(tmp_path)
    main = {"evaluate": evaluate_main, "gait": gait_main, "plot": plot_main}[tool]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and "Traceback" not in "\n".join(err), err
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder
