"""What runs a job: ``train.run`` (one run -> TrialResult), the CLI around it, and the Trainer loop."""
