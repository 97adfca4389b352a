"""The command-line parser of every hydrarl tool: a bad option is one ``error:`` line on stderr and exit status 2.

argparse's own ``error`` prints the usage block and ``<prog>: error: ...`` and exits; :class:`ArgumentParser`
raises a :class:`~hydrarl.errors.UserError` ``<what argparse found> (<prog> -h lists the options)`` instead, so a
bad option takes the one exit path of bad input: the tool's ``main`` is decorated with
:func:`hydrarl.errors.exit_on_user_error`, which prints ``error: ...`` and returns 2. Options and positional words
may come in any order (``plot_gait.py <run> --speed 0.5 render=record``), as users type them. :func:`number` is the
argparse type of a bounded, finite number whose message says what is allowed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import NoReturn

from hydrarl.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors (unknown option, bad value, invalid choice, missing argument) are
    UserErrors: one ``error:`` line and exit status 2 from the ``exit_on_user_error`` main that parses, with no
    usage block. ``prog`` should be what the user types (``experiment/plot.py``): the message points at
    ``<prog> -h``."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} ({self.prog} -h lists the options)")

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """Options anywhere among the positional words. Plain argparse fills every optional positional before the
        first option and then refuses a word after it (``<run> --speed 0.5 render=record``: "unrecognized
        arguments"); a parser with sub-commands keeps argparse's order (intermixed parsing does not take them)."""
        if self._subparsers is not None:
            return super().parse_args(args, namespace)
        return self.parse_intermixed_args(args, namespace)


def number(kind: type[int] | type[float], what: str, least: float | None = None,
           most: float | None = None) -> Callable[[str], int | float]:
    """An argparse type: a finite ``kind`` (int or float) in [``least``, ``most``] (either bound may be left out);
    anything else is refused with a message naming what is allowed and ``what`` the option means."""
    allowed = "an integer" if kind is int else "a finite number"
    if least is not None and most is not None:
        allowed += f" in {least:g}..{most:g}"
    elif least is not None:
        allowed += f" >= {least:g}"
    elif most is not None:
        allowed += f" <= {most:g}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (value is None or not math.isfinite(value) or (least is not None and value < least)
                or (most is not None and value > most)):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: give {allowed} ({what})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


__all__ = ["ArgumentParser", "number"]
