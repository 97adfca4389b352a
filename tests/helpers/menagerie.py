"""The Cassie model for tests: MuJoCo Menagerie's copy in ``MENAGERIE_ROOT``, else ``../shared/menagerie`` beside the
project (make test and CI set it). The ``menagerie`` fixture in tests/conftest.py skips a test without it."""

from __future__ import annotations

import os

import pytest

from hydrarl.paths import PROJECT_ROOT

MENAGERIE = os.environ.get("MENAGERIE_ROOT") or str(PROJECT_ROOT.parent / "shared" / "menagerie")


def skip_without_cassie() -> None:
    """Skip the calling test (or fixture) when the Menagerie copy does not hold Cassie's model."""
    if not os.path.isdir(os.path.join(MENAGERIE, "agility_cassie")):
        pytest.skip(f"no menagerie copy at {MENAGERIE}")
