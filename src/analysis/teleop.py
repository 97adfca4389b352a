"""``collector=teleop``: drive the PenguinPi from the keys of the terminal the command runs in.

The users' key map: forward/backward and left/right, ``fwd, turn`` in {-1, 0, 1}, to wheel commands
``L = 20 fwd - 5 turn``, ``R = 20 fwd + 5 turn``, given to the env as its continuous actions ``(L, R) / max_speed``
(which the env turns back into exactly these commands). So a dataset recorded by hand has the same actions as one
recorded by a controller or a policy, and offline agents learn from either. Keys: the arrows or w/a/s/d; space (or
no key during a step) stands still; q ends the session after the current episode; Ctrl-C ends it at once (the env
stops the robot; finished episodes are kept). Each step uses the last key pressed since the previous step, so a
held key (the terminal repeats it) keeps driving.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from typing import Any

import numpy as np

from hydrarl.envs.penguinpi.env import TELEOP_FORWARD, TELEOP_TURN, teleop_commands
from hydrarl.errors import UserError

KEYS = {  # key -> (fwd, turn)
    b"\x1b[A": (1, 0), b"w": (1, 0), b"\x1b[B": (-1, 0), b"s": (-1, 0),
    b"\x1b[D": (0, -1), b"a": (0, -1), b"\x1b[C": (0, 1), b"d": (0, 1), b" ": (0, 0),
}
HELP = "drive with the arrows or w/a/s/d (space: stand), q: stop after this episode, Ctrl-C: stop now"


def wheel_action(fwd: int, turn: int, max_speed: int) -> np.ndarray:
    """The env's continuous action for (fwd, turn): the users' wheel commands divided by ``max_speed``."""
    return np.array(teleop_commands(fwd, turn), dtype=np.float32) / max_speed


class TerminalTeleop:
    """Reads keys from ``stream`` (a terminal) without waiting; ``predict`` has SB3's signature, so the collector
    drives with it as with any model. Use as a context manager: the terminal is put in cbreak mode (keys arrive at
    once, Ctrl-C still interrupts) and restored on exit."""

    def __init__(self, max_speed: int, stream: Any = None):
        """``max_speed``: the env's wheel command of a continuous action 1 (at least 25, the largest key command)."""
        if max_speed < TELEOP_FORWARD + TELEOP_TURN:
            raise UserError(f"collector=teleop drives with wheel commands up to {TELEOP_FORWARD + TELEOP_TURN}; "
                            f"env.kwargs.max_speed={max_speed} cannot give them: use {TELEOP_FORWARD + TELEOP_TURN} or more.")
        self.max_speed = max_speed
        self.stream = stream if stream is not None else sys.stdin
        if not self.stream.isatty():
            raise UserError("collector=teleop reads the keys of a terminal, and this command's input is not one: run it "
                            "in a terminal (not piped or in the background).")
        self.fd = self.stream.fileno()
        self.quit = False
        self._saved: list | None = None

    def __enter__(self) -> TerminalTeleop:
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        print(HELP, file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def _pending(self) -> bytes:
        data = b""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 64)
            if not chunk:
                break
            data += chunk
        return data

    def last_key(self) -> tuple[int, int]:
        """(fwd, turn) of the last key pressed since the previous call; (0, 0) if none. ``q`` sets :attr:`quit`."""
        data, move, i = self._pending(), (0, 0), 0
        while i < len(data):
            key = data[i:i + 3] if data[i:i + 1] == b"\x1b" else data[i:i + 1]
            if key.lower() == b"q":
                self.quit = True
            move = KEYS.get(key.lower() if len(key) == 1 else key, move)
            i += len(key)
        return move

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        return wheel_action(*self.last_key(), self.max_speed)[None], state
