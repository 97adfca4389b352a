"""Aligned text tables for the terminal: the agent comparison's markdown table and the regression matrix's summary."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[bool] | None = None,
               markdown: bool = False) -> str:
    """``rows`` under ``header``, each column as wide as its widest cell; ``right[c]`` right-aligns column ``c``.

    Plain: ``a | b`` lines with a ``--+--`` rule under the header. ``markdown=True``: ``| a | b |`` lines with
    a ``|---|--:|`` rule, whose ``:`` marks the right-aligned columns.
    """
    cells = [[str(x) for x in row] for row in [header, *rows]]
    right = list(right) if right is not None else [False] * len(header)
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]

    def line(values: list[str]) -> str:
        inner = " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True))
        return f"| {inner} |" if markdown else inner

    if markdown:
        rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True)) + "|"
    else:
        rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])
