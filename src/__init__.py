"""hydrarl: run, sweep and compare reinforcement-learning experiments with Hydra, SB3 and MLflow.

Importing the package sets privacy defaults for the tracking libraries before they import
(each only if the user has not set it): no Comet environment probing or error tracking, no MLflow
or Ray usage telemetry. Nothing here reaches beyond 127.0.0.1. On Linux without a display it also selects
off-screen rendering (MuJoCo through EGL, pygame's dummy driver).
"""

import os
import sys
import time

__version__ = "0.1.0"
IMPORTED_AT = time.time()  # start-up time is measured from here (see time/first_step_seconds)

_PRIVACY_DEFAULTS = {
    "COMET_AUTO_LOG_ENV_DETAILS": "false",
    "COMET_ERROR_TRACKING_ENABLE": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# Off-screen rendering on machines without a display (render=record, evaluate.py --video).
_HEADLESS_DEFAULTS = {"MUJOCO_GL": "egl", "SDL_VIDEODRIVER": "dummy"}

for _key, _value in _PRIVACY_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    for _key, _value in _HEADLESS_DEFAULTS.items():
        os.environ.setdefault(_key, _value)

# gymnasium-robotics prints a notice about its Adroit hand envs (which we do not use) on stderr at every
# import; drop it, so a run's stderr holds only what concerns the run (bad input: one `error:` line).
try:
    from farama_notifications import notifications as _farama_notifications

    _farama_notifications.pop("gymnasium_robotics", None)
except ImportError:
    pass

# The legacy ``gym`` (installed for d3rlpy, imported by SB3 to check for it) prints a notice on stderr at import,
# from this table of notices per version: drop them, for the same reason.
try:
    from gym_notices import notices as _gym_notices

    _gym_notices.notices.clear()
except ImportError:
    pass
