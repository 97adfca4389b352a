"""The ``experiment/train.py`` entry point: check the command line, then hand it to Hydra.

Before Hydra starts, every override is checked against the config tree (unknown env, algorithm,
logger or key; unparsable values; bad values of known keys), so that bad input ends with one
message naming what is available and exit status 2 — and no run directory. ``trainer.resume``
is expanded here: the original run's overrides are replayed and the run directory reused.
"""

from __future__ import annotations

import logging
import shutil
import sys
import traceback
from datetime import datetime
from pathlib import Path

import hydra
import yaml
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hydrarl.config import override_key
from hydrarl.config.compose import check_command_line
from hydrarl.config.resolvers import release_claims
from hydrarl.errors import UserError, exit_now_on_user_error, report_user_error, writable_dir
from hydrarl.launchers.grid_report import record_failure
from hydrarl.paths import CONF_DIR
from hydrarl.status import Status
from hydrarl.sweep.settings import SWEEPER_TARGET
from hydrarl.training.result import RESULT_FILE, TrialResult

log = logging.getLogger("hydrarl")

def _latest_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was last started with: its newest ``.hydra/resumed_*/`` or ``.hydra/``."""
    hydra_dir = run_dir / ".hydra"
    candidates = sorted(hydra_dir.glob("resumed_*/overrides.yaml")) or [hydra_dir / "overrides.yaml"]
    if not candidates[-1].exists():
        raise UserError(f"trainer.resume={run_dir}: {candidates[-1]} is missing, so the run's config is unknown.")
    lines = yaml.safe_load(candidates[-1].read_text()) or []
    return [o for o in lines if not o.startswith("hydra.") and override_key(o) != "trainer.resume"]


def _resume_overrides(overrides: list[str]) -> list[str]:
    """For ``trainer.resume=<dir>``: the run's last overrides + these, in that run's directory."""
    resume = [o for o in overrides if override_key(o) == "trainer.resume"]
    if not resume:
        return overrides
    from hydrarl.training.checkpoint import find_last_checkpoint  # torch: only when resuming

    run_dir = Path(resume[-1].split("=", 1)[1]).expanduser().resolve()
    find_last_checkpoint(run_dir)
    previous = _latest_overrides(run_dir)
    now = {override_key(o): o for o in overrides}
    for o in previous:
        if override_key(o) in ("env", "algorithm") and override_key(o) in now and now[override_key(o)] != o:
            raise UserError(f"trainer.resume: the run used {o}; a resumed run cannot change {override_key(o)} ({now[override_key(o)]}).")
    kept = [o for o in previous if override_key(o) not in now]
    others = [o for o in overrides if override_key(o) != "trainer.resume"]
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    return [*kept, *others, f"trainer.resume={run_dir}", f"hydra.run.dir={run_dir}", f"hydra.output_subdir=.hydra/resumed_{stamp}"]


# The run directory preflight found empty (made for this run): the one a run that fails its input check removes.
_fresh_run_dir: Path | None = None
SWEEPER_PREFIX = "hydra.sweeper."


def _check_output_dir(multirun: bool) -> Path:
    """The folder the command writes to (``hydra.sweep.dir`` with --multirun, else ``hydra.run.dir``), as the
    last composition resolves it, proven writable before anything else happens. A single run's folder is made
    here (a default one is claimed: ``${fresh_dir:...}``) and, when found empty, remembered as this run's to
    remove if the run is refused; a multirun's is only probed (nothing made: a refused search or grid leaves
    no sweep dir). Raises UserError naming the key and the cause."""
    global _fresh_run_dir
    hc = HydraConfig.get()
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    value = str(hc.sweep.dir if multirun else hc.run.dir)
    if not value.strip():
        raise UserError(f"{key} is empty: give a folder for the {'sweep' if multirun else 'run'}, or leave {key} out for a new one under runs/.")
    out = writable_dir(Path(value), key, create=not multirun)
    if not multirun and not any(out.iterdir()):
        _fresh_run_dir = out.resolve()
    return out


def _check_sweeper_keys(overrides: list[str]) -> None:
    """Each ``hydra.sweeper.<name>`` override against the settings the composed sweeper has (for a search, the
    fields of :class:`hydrarl.sweep.settings.RLOptunaSweeperConf`): a UserError naming the unknown one and
    the allowed names, instead of Hydra's "Could not override" when the sweeper starts."""
    sweeper = HydraConfig.get().sweeper
    allowed = [str(k) for k in sweeper.keys() if not str(k).startswith("_")]
    for override in overrides:
        key = override_key(override)
        if not key.startswith(SWEEPER_PREFIX):
            continue
        name = key.removeprefix(SWEEPER_PREFIX).split(".")[0]
        if name not in allowed:
            which = "the rl_optuna sweeper (src/sweep/settings.py)" if sweeper.get("_target_") == SWEEPER_TARGET else "this multirun's sweeper"
            raise UserError(f"hydra.sweeper.{name} is not a setting of {which}; its settings are: {', '.join(allowed)}.")


def preflight(argv: list[str]) -> list[str]:
    """Check the command line and where it writes; return it (rewritten for a resume). Raises UserError."""
    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.info or args.cfg or args.shell_completion or args.config_name:
        return argv
    multirun = bool(args.multirun)
    overrides = list(args.overrides)
    if multirun:
        resume = next((o for o in overrides if override_key(o) == "trainer.resume"), None)
        if resume is not None:
            raise UserError(f"{resume} continues one run in its own directory; it cannot be part of a --multirun: "
                            "drop --multirun and any sweep values.")
    else:
        overrides = _resume_overrides(overrides)
    cfg = check_command_line(overrides, multirun)
    _check_sweeper_keys(overrides)
    search = multirun and HydraConfig.get().sweeper.get("_target_") == SWEEPER_TARGET
    if multirun and not search and "mlflow" in (cfg.get("logger") or {}):
        from hydrarl.trackers.mlflow_tracker import prepare_store

        prepare_store(cfg.logger.mlflow.tracking_uri)  # one process creates the schema, not N grid jobs at once
    release_claims(keep=_check_output_dir(multirun))  # folders claimed for settings this command overrides
    flags = [a for a in argv if a.startswith("-")]
    return [*flags, *overrides]


def _fail_fresh_run(run_dir: Path) -> None:
    """Remove the directory made for a run that never started: only one preflight found empty (never a
    resumed run's or a folder that held anything else), and only while no checkpoint or result is in it."""
    if _fresh_run_dir is None or run_dir.resolve() != _fresh_run_dir:
        return
    if not (run_dir / "checkpoints").exists() and not (run_dir / RESULT_FILE).exists():
        logging.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
        release_claims()  # and the parents claimed for it (runs/<env>/<algorithm>) when nothing else is there


def _failed_job(cfg: DictConfig, hc, run_dir: Path, error: str) -> TrialResult:
    """A multirun job's failure: recorded for the grid's exit status (``grid_report``), returned, not raised."""
    if not cfg.get("trial"):
        record_failure(hc.sweep.dir, run_dir.name, error)
    return TrialResult(None, 0, False, Status.FAILED, None, run_dir=str(run_dir), error=error)


def task(cfg: DictConfig) -> TrialResult | None:
    """Hydra's task function: one run. In a multirun a failure is returned, never raised."""
    from hydrarl.training.train import run
    from hydrarl.training.trainer import Interrupted

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        reporter = None
        if cfg.get("trial"):  # a search's trial: each epoch's score goes to the study's pruner
            from hydrarl.sweep.reporter import TrialReporter

            reporter = TrialReporter.from_config(cfg.trial)
        result = run(cfg, run_dir, reporter)
    except UserError as exc:
        if multirun:
            log.error("%s", exc)
            return _failed_job(cfg, hc, run_dir, str(exc))
        code = report_user_error(exc)
        if not cfg.get("trial"):  # a sweep trial keeps its directory: its job.log says why it failed
            _fail_fresh_run(run_dir)
        sys.exit(code)
    except Interrupted as exc:
        log.warning("%s", exc)
        if multirun:
            raise
        sys.exit(130)
    except Exception:
        if not multirun:
            raise
        log.exception("job %s failed", hc.job.num)
        return _failed_job(cfg, hc, run_dir, traceback.format_exc())
    log.info("done: %s | score %s | %d epochs | %d steps | %s", result.status, result.score, result.epochs_run, result.num_timesteps, run_dir)
    return result


def register_plugins() -> None:
    """Register our Hydra plugins explicitly: Hydra finds plugins by walking the ``hydra_plugins``
    namespace, which an editable install exposes only through an import hook it cannot walk."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.rl_optuna_sweeper.rl_optuna_sweeper import RLOptunaSweeper

    Plugins.instance().register(RLOptunaSweeper)


def main() -> None:
    """Entry point of ``experiment/train.py``."""
    register_plugins()
    with exit_now_on_user_error():
        try:
            argv = preflight(sys.argv[1:])
        except UserError:
            release_claims()  # a refused command leaves no folder behind
            raise
    sys.argv = [sys.argv[0], *argv]
    hydra.main(config_path=str(CONF_DIR), config_name="main", version_base="1.3")(task)()
