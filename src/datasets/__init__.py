"""Offline datasets (Minari format) that collectors write and offline training reads."""
