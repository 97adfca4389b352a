"""The Agility Cassie biped (MuJoCo Menagerie) as gymnasium env ``Cassie-v0`` (``env.CassieEnv``).

Importing this module registers the id; configs name it ``hydrarl.envs.cassie:Cassie-v0`` so that gymnasium
imports it (and MuJoCo) only when the env is made. 400 steps = 10 s at the default 40 Hz policy rate.
"""

import gymnasium as gym

gym.register(id="Cassie-v0", entry_point="hydrarl.envs.cassie.env:CassieEnv", max_episode_steps=400)
