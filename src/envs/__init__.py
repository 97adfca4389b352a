"""Environments and wrappers of our own, and the factory that builds any configured env
(``hydrarl.envs.factory``: ``make_env``, ``make_vec_env``).

Env ids in ``conf/env`` may name the module that registers them ("module:EnvId"): gymnasium
imports that module on first use, so importing hydrarl never imports a simulator. This package
imports nothing itself, so a simulator process (``python -m hydrarl.envs.penguinpi.sim_server``)
does not pay for torch and SB3.
"""
