"""The Cassie model for tests: MuJoCo Menagerie's copy in ``MENAGERIE_ROOT``, else ``../shared/menagerie`` beside the
project (make test and CI set it). The ``menagerie`` fixture in tests/conftest.py skips a test without it."""

from __future__ import annotations

import os

from hydrarl.paths import PROJECT_ROOT

MENAGERIE = os.environ.get("MENAGERIE_ROOT") or str(PROJECT_ROOT.parent / "shared" / "menagerie")


def has_cassie() -> bool:
    """Whether the Menagerie copy holds Cassie's model."""
    return os.path.isdir(os.path.join(MENAGERIE, "agility_cassie"))
