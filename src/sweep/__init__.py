"""Early-stopped, pruning, asynchronous Optuna searches (the ``rl_optuna`` Hydra sweeper's logic)."""
