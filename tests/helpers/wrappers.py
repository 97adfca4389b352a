"""Wrappers that make real failures happen inside real runs (imported by config _target_)."""

import gymnasium as gym


class CrashAfter(gym.Wrapper):
    """Raises RuntimeError at env step ``steps``: a crash in the middle of training."""

    def __init__(self, env: gym.Env, steps: int):
        super().__init__(env)
        self.steps, self.count = steps, 0

    def step(self, action):
        self.count += 1
        if self.count >= self.steps:
            raise RuntimeError(f"deliberate crash at step {self.count}")
        return self.env.step(action)
