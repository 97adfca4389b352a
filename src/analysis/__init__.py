"""The tools behind ``experiment/*.py`` other than training: reading recorded runs back (``runs``, ``curves``,
``plot``, ``final_scores``), playing trained agents (``evaluate_agents``, ``gait``, ``play``), recording and
deploying on the robot (``collect``, ``teleop``, ``deploy``), ``mlflow_to_comet`` and ``maintenance``."""
