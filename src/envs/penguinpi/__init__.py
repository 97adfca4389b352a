"""The PenguinPi robot (QUT) as gymnasium env ``PenguinPi-v0`` (``env.PenguinPiEnv``), with its simulator
(``sim_server``, over ``robot`` and ``track``) and HTTP client (``client``); see docs/envs/penguinpi.md.

Importing this module registers the id; configs name it ``hydrarl.envs.penguinpi:PenguinPi-v0`` so that gymnasium
imports the env only when it is made. 200 steps = 40 s of driving at the default 0.2 s per step.
"""

import gymnasium as gym

gym.register(id="PenguinPi-v0", entry_point="hydrarl.envs.penguinpi.env:PenguinPiEnv", max_episode_steps=200)
