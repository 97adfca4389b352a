"""Command-line overrides as text: the key one sets, and merging two lists."""

from __future__ import annotations


def override_key(override: str) -> str:
    """The key or group a command-line override sets (``+trainer.x=1`` -> ``trainer.x``)."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(base: list[str], own: list[str]) -> list[str]:
    """``base`` without the keys ``own`` sets, then ``own``: one value per key on a command line."""
    keys = {override_key(o) for o in own}
    return [*(o for o in base if override_key(o) not in keys), *own]
