"""What runs jobs: the command line behind ``experiment/train.py`` (``cli``), grid reports, the regression matrix
(``run_testing``, ``pairs``, ``matrix``, ``scheduler``), the round trip and its fork server. One run itself
(``train.run``, the Trainer) is :mod:`hydrarl.training`."""
