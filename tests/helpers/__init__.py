"""What tests share besides fixtures: running the real CLI, composing the real config tree, synthetic
CarRacing frames, a synthetic sweep objective, and wrappers that make real failures happen."""

from tests.helpers.wrappers import CrashAfter  # noqa: F401  (config _target_: tests.helpers.CrashAfter)
