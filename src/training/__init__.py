"""The engine of one run: config -> env -> agent -> Trainer -> TrialResult, its checkpoints and evaluation.

Nothing here knows about searches or the regression matrix; they call in, never the other way.
"""
