"""sb3-contrib's ``TimeFeatureWrapper`` (the remaining fraction of the episode as one more observation feature,
1 → 0), without its side effect on the env it wraps.

sb3-contrib's wrapper writes the widened space into the space object of the env it wraps: for a Dict space (the
goal envs) it replaces that object's ``observation`` entry, and that object is the env's own. The env, and
gymnasium's passive checker inside ``gymnasium.make``, then declare one feature more than the env returns (the
checker warned "obs returned by reset()/step() is not within the observation space" on every Fetch and PointMaze
env). Here the wrapper keeps the widened space as its own and gives the wrapped env its space back.
"""

from __future__ import annotations

import copy

import gymnasium as gym
from gymnasium import spaces
from sb3_contrib.common.wrappers import TimeFeatureWrapper as _Sb3TimeFeatureWrapper


class TimeFeatureWrapper(_Sb3TimeFeatureWrapper):
    """Appends t_left / max_steps (in [0, 1]) to the observation (to its ``observation`` entry for a Dict space).

    :param env: a Box or Dict (with an ``observation`` Box) observation space; left as it was
    :param max_steps: the episode length when the env's spec has none
    :param test_mode: keep the feature at 1.0 (to check the agent did not overfit it)
    """

    def __init__(self, env: gym.Env, max_steps: int = 1000, test_mode: bool = False) -> None:
        own = env.observation_space
        entry = own.spaces["observation"] if isinstance(own, spaces.Dict) else None
        super().__init__(env, max_steps, test_mode)
        self.observation_space = copy.deepcopy(env.observation_space)  # the widened space, this wrapper's own
        if isinstance(own, spaces.Dict):
            own.spaces["observation"] = entry
        else:
            env.observation_space = own
