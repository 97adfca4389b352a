"""The pybullet bumps tasks (see docs/envs/bumps.md); importing this module registers their gymnasium ids.

``Bumps-v0`` (normal), ``BumpsPunish-v0``, ``BumpsTest-v0`` and ``BumpTarget-v0``, 50 steps each.
Env configs name them ``hydrarl.envs.bumps:Bumps-v0``, so gymnasium imports this module on first
use; the entry points are strings, so pybullet is imported only when an env is made.
"""

from gymnasium.envs.registration import register

MAX_EPISODE_STEPS = 50

for _id, _variant in (("Bumps-v0", "normal"), ("BumpsPunish-v0", "punish"), ("BumpsTest-v0", "test")):
    register(id=_id, entry_point="hydrarl.envs.bumps.env:BumpsEnv", max_episode_steps=MAX_EPISODE_STEPS,
             kwargs={"variant": _variant})
register(id="BumpTarget-v0", entry_point="hydrarl.envs.bumps.env:BumpTargetEnv", max_episode_steps=MAX_EPISODE_STEPS)
