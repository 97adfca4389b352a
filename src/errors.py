"""Errors that are the user's to fix: they end a run with a one-paragraph message and exit status 2."""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec

USER_ERROR_EXIT_CODE = 2
P = ParamSpec("P")

# Python module that is missing -> the pyproject extra that installs it.
EXTRA_FOR_MODULE = {
    "Box2D": "box2d",
    "comet_ml": "comet",
    "tensorboard": "tensorboard",
    "torch.utils.tensorboard": "tensorboard",
    "pybullet": "pybullet",
    "sbx": "jax",
    "jax": "jax",
}


class UserError(Exception):
    """Bad input: an unknown name, an incompatible pairing, a bad value. No traceback is shown."""


class Incompatible(UserError):
    """This algorithm cannot act in this env (action or observation space, goal interface): a refusal of
    the pairing, not a fault of either. The regression matrix counts only these (and MissingDependency) as
    refused pairs; any other error while building a pair is a failure."""


class MissingDependency(UserError):
    """An optional part is used but its extra is not installed."""

    def __init__(self, what: str, module: str):
        extra = EXTRA_FOR_MODULE.get(module) or EXTRA_FOR_MODULE.get(module.split(".")[0])
        how = (
            f"install the extra: pip install -e '.[{extra}]' (or `make` installs every extra)"
            if extra
            else f"install the Python module '{module}'"
        )
        super().__init__(f"{what} needs the optional module '{module}', which is not installed: {how}.")
        self.module = module
        self.extra = extra


def missing_module_name(exc: BaseException) -> str | None:
    """The top-level module an ImportError (or gymnasium's DependencyNotInstalled) is about."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc.name
        if type(exc).__name__ == "DependencyNotInstalled":
            text = str(exc)
            for module in EXTRA_FOR_MODULE:
                if module.lower() in text.lower():
                    return module
        exc = exc.__cause__ or exc.__context__
    return None


def writable_dir(directory: Path, what: str, create: bool = True) -> Path:
    """Prove a file can be written in ``directory`` before any work whose output goes there; a UserError
    naming ``what`` (e.g. "hydra.run.dir", "--out") and the cause otherwise. With ``create`` the folder (and
    its parents) is made; without, nothing is made: the folder, or where it does not exist yet its nearest
    existing ancestor (which must be a folder), is probed with a temporary file that is removed at once."""
    directory = Path(directory)
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory
        else:
            probe = next(p for p in (directory.absolute(), *directory.absolute().parents) if p.exists())
            if not probe.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(probe))
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write_test_"):
            pass
    except OSError as exc:
        raise UserError(f"{what}={directory} cannot be written ({exc.strerror or exc}); "
                        "choose a folder you can write to, with free space.") from None
    return directory


def report_user_error(exc: UserError) -> int:
    """Print ``error: <message>`` on stderr, with no traceback; returns the exit status for it (2)."""
    print(f"error: {exc}", file=sys.stderr)
    return USER_ERROR_EXIT_CODE


def exit_on_user_error(main: Callable[P, int]) -> Callable[P, int]:
    """Decorator for a command's ``main`` that returns its exit status (``sys.exit(main())``): a
    :class:`UserError` it raises is reported (``error: <message>`` on stderr) and the status is 2."""

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            return report_user_error(exc)

    return wrapper


@contextmanager
def exit_now_on_user_error() -> Iterator[None]:
    """The same for code that returns no exit status (Hydra's task and sweeper, ``python -m`` blocks):
    a :class:`UserError` raised in the ``with`` block is reported and ends the process with status 2."""
    try:
        yield
    except UserError as exc:
        sys.exit(report_user_error(exc))
