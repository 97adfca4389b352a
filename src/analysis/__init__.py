"""Reading finished runs back: selection from an MLflow store (``runs``), aggregation of learning
curves across seeds (``curves``) and the plotting command behind ``experiment/plot.py`` (``plot``)."""
