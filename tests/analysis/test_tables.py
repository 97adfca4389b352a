"""The one text-table formatter behind the agent comparison (markdown) and the regression matrix's summary (plain)."""

from __future__ import annotations

from hydrarl.analysis.tables import text_table


def test_plain_table_left_aligns_under_a_dashed_rule():
    table = text_table(["pair", "result", "error", "seconds"], [["a/b", "pass", "", 12], ["long/name", "FAIL", "boom", 3]])
    assert table.split("\n") == [
        "pair      | result | error | seconds",
        "----------+--------+-------+--------",
        "a/b       | pass   |       | 12     ",
        "long/name | FAIL   | boom  | 3      ",
    ]
    assert text_table(["bar", "result"], []) == "bar | result\n----+-------"


def test_markdown_table_marks_right_aligned_columns():
    table = text_table(["agent", "mean return"], [["x", "1.23"], ["longer", "1000.50"]], right=[False, True], markdown=True)
    assert table.split("\n") == [
        "| agent  | mean return |",
        "|--------|------------:|",
        "| x      |        1.23 |",
        "| longer |     1000.50 |",
    ]
