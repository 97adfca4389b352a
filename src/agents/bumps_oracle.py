"""A scripted oracle for the bumps tasks (``env=Bumps``/``BumpsPunish``/``BumpsTest`` with
``env.kwargs.privileged=true``): an upper reference for what a memory-based agent can reach.

It reads the privileged observation ``[y_finger, -θ_finger, y_bump1, y_bump2]`` (m, rad) and acts
with Box(2) actions ``[step_ratio, stiffness_ratio]``. Plan, fixed at each episode's start from
where the finger is:

- **left of bump1**: move right with the softest finger (``soft``) until the carrier is ``release``
  past bump1 (the finger, whose tip is level with the table, rides over the bump and slides off it
  about 0.10 m past its centre), then push;
- **right of bump2**: move left softly until the carrier is ``release`` left of bump2, then push;
- **between the bumps**: push at once.

Pushing = full steps right with the stiffest finger (``hard``): the upright fingertip meets bump2's
left side and shoves it right, the success condition. Soft steps stop exactly at the release point
(a shorter step there), so the finger is not carried further than needed towards bump1.

Memory: the plan per env copy (0 push, 1 cross bump1 rightwards, 2 cross bump2 leftwards) lives in
``state`` (an (n_envs,) array), set where ``episode_start`` is true. The oracle draws no random
numbers and learns nothing.
"""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv

from hydrarl.agents.controllers import Controller, ControllerMismatch
from hydrarl.errors import UserError

STEP_LENGTH = 0.05  # m, the env's carrier move at step_ratio = ±1
PUSH, CROSS_RIGHT, CROSS_LEFT = 0, 1, 2


class BumpsOracle(Controller):
    """Cross the bumps softly to get left of bump2, then push it right hard (see the module doc).

    ``release``: m, how far past a bump's centre the carrier goes before the finger is free of it;
    ``soft``/``hard``: stiffness ratios in [-1, 1] for crossing and pushing.
    """

    def __init__(
        self,
        policy: str | type[BasePolicy] = "MlpPolicy",
        env: GymEnv | str | None = None,
        release: float = 0.11,
        soft: float = -1.0,
        hard: float = 1.0,
        seed: int | None = None,
        device: th.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        self.release, self.soft, self.hard = float(release), float(soft), float(hard)
        super().__init__(policy, env, seed=seed, device=device, verbose=verbose, _init_setup_model=_init_setup_model)

    def _setup_controller(self) -> None:
        obs, act = self.observation_space, self.action_space
        if not (isinstance(obs, spaces.Box) and obs.shape == (4,) and isinstance(act, spaces.Box) and act.shape == (2,)):
            raise ControllerMismatch(
                "algorithm=bumps_oracle reads the bumps env's privileged observation [y_finger, -theta, y_bump1, y_bump2] "
                f"and acts with Box(2) actions; this env gives observations {obs} and actions {act}: "
                "use env=Bumps (or BumpsPunish, BumpsTest) with env.kwargs.privileged=true and env.kwargs.discrete=false.")
        bad = [f"algorithm.{name}={value} (give a ratio in [-1, 1])"
               for name, value in (("soft", self.soft), ("hard", self.hard)) if not -1.0 <= value <= 1.0]
        if not 0.0 < self.release <= 0.3:
            bad.append(f"algorithm.release={self.release} (give metres in (0, 0.3])")
        if bad:
            raise UserError(f"algorithm=bumps_oracle: bad settings: {'; '.join(bad)}.")

    def _act(self, observation, state, episode_start, deterministic):
        obs = np.asarray(observation, dtype=np.float64)
        y, bump1, bump2 = obs[:, 0], obs[:, 2], obs[:, 3]
        n = obs.shape[0]
        plan = np.full(n, PUSH) if state is None or np.shape(state) != (n,) else np.array(state, dtype=np.int64)
        start = np.asarray(episode_start, dtype=bool)
        plan[start] = np.select([y < bump1, y > bump2], [CROSS_RIGHT, CROSS_LEFT], PUSH)[start]
        goal = np.where(plan == CROSS_RIGHT, bump1 + self.release, bump2 - self.release)
        crossing = plan != PUSH
        step = np.where(crossing, np.clip((goal - y) / STEP_LENGTH, -1.0, 1.0), 1.0)
        stiffness = np.where(crossing, self.soft, self.hard)
        plan[crossing & (np.abs(goal - y) <= STEP_LENGTH)] = PUSH  # this step reaches the release point
        return np.stack([step, stiffness], axis=1).astype(np.float32), plan
