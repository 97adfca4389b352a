"""The folder an analysis tool writes to (``--out``, or a new ``runs/<tool>/<date>_<time>``): made and proven
writable before the tool's work, and the one place its write errors become a UserError."""

from __future__ import annotations

import argparse
import errno
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from hydrarl.errors import UserError, writable_dir
from hydrarl.paths import tool_output_dir

# Errors of the storage itself, wherever the write was: the disk is full or read-only.
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def out_argument(text: str) -> Path:
    """The argparse type of ``--out``: a folder path, not an empty text (which would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a folder path (an empty value would write into the current folder)")
    return Path(text)


@contextmanager
def output_folder(given: Path | None, tool: str) -> Iterator[Path]:
    """``given`` (the ``--out`` option) or a new ``runs/<tool>/<date>_<time>[_n]`` of this process's own,
    checked with :func:`hydrarl.errors.writable_dir` before the block runs (a UserError naming ``--out`` and
    the cause). In the block, an OSError writing into the folder (or a full or read-only disk) becomes a
    UserError naming the folder; when the block raises, the folder is removed again if this call made it
    and it is still empty (bad input writes nothing)."""
    target = Path(given) if given is not None else tool_output_dir(tool)
    made = given is None or not target.exists()
    out = writable_dir(target, "--out")
    try:
        yield out
    except OSError as exc:
        inside = exc.filename is not None and Path(exc.filename).resolve().is_relative_to(out.resolve())
        if not (inside or exc.errno in STORAGE_ERRORS):
            raise
        _remove_if_empty(out, made)
        raise UserError(f"--out={out} cannot be written ({exc.strerror or exc}); "
                        "choose a folder you can write to, with free space.") from None
    except BaseException:
        _remove_if_empty(out, made)
        raise


def _remove_if_empty(out: Path, made: bool) -> None:
    if made:
        with suppress(OSError):
            out.rmdir()  # only an empty folder


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` and close it (also when the write fails); returns ``path``."""
    try:
        fig.savefig(path)
    finally:
        pyplot().close(fig)
    return path

