"""Environments and wrappers of our own, and the factory that builds any configured env.

Env ids in ``conf/env`` may name the module that registers them ("module:EnvId"): gymnasium
imports that module on first use, so importing hydrarl never imports a simulator.
"""

from hydrarl.envs.factory import make_env, make_vec_env

__all__ = ["make_env", "make_vec_env"]
