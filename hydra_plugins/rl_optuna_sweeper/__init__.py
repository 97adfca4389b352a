"""Hydra sweeper ``rl_optuna``: early-stopped, pruning, asynchronous Optuna searches (hydrarl)."""
