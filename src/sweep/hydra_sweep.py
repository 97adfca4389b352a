"""``python experiment/train.py --multirun +search=<Env>/<algo> [overrides]``: the rl_optuna sweeper's body.

Overrides with sweep values on the command line (``algorithm.gamma=interval(0.9,0.999)``) join the
preset's search space; plain ones go to every trial. Each trial is ``experiment/train.py`` in its
own process (``<sweep dir>/trial_<n>/``), a child of the study's MLflow run.

Bad settings (an unknown objective, sampler, pruner or storage) or a bad space (an unknown key, an empty or
inverted range, a value the key does not allow) end the search before it records anything: ``error: ...``, exit
status 2. With the mlflow logger, the store's schema is made once the checks pass, and the MLflow runs a dead
sweeper's trials left RUNNING in the sweep dir are ended as KILLED. A search in which any trial failed lists the failed trials once
its results are written and exits 1 (pruned trials are no failures).
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from hydrarl.config import merge_overrides
from hydrarl.config.compose import compose
from hydrarl.errors import UserError, exit_now_on_user_error
from hydrarl.runinfo import flatten, run_tags
from hydrarl.status import Status
from hydrarl.sweep import shared
from hydrarl.sweep.results import write_results
from hydrarl.sweep.runner import STOP_FILE, SweepRunner
from hydrarl.sweep.settings import RLOptunaSweeperConf
from hydrarl.sweep.space import override_value, probe_values
from hydrarl.sweep.submitit_trials import SubmititTrials, cluster_of, make_executor
from hydrarl.sweep.trials import FailedTrial, failed_trials
from hydrarl.training.jobs import run_job

log = logging.getLogger("hydrarl.sweep")

PARENT_ATTR = "hydrarl.mlflow_parent_run_id"
PARENT_WAIT_SECONDS = 60  # how long a process joining a new study waits for its creator's parent run


def split_arguments(arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    """Command-line overrides -> (overrides for every trial, extra search-space entries)."""
    base, space = [], {}
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_sweep_override():
            space[override.get_key_element()] = override.input_line.split("=", 1)[1]
        else:
            base.append(override.input_line)
    return base, space


def _runner(config: DictConfig, options: dict[str, Any], space: dict[str, str], base: list[str]) -> SweepRunner:
    """The runner of this search: ``options`` (the ``hydra.sweeper`` fields, less Hydra's ``_target_`` and ``_recursive_``) with the
    command line's sweeps added to ``params``; sweep dir, study name and epochs from the config."""
    choices = config.hydra.runtime.choices
    options = {k: (OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v) for k, v in options.items()}
    options["params"] = {**(options.get("params") or {}), **space}
    if not options["params"] and not options.get("custom_search_space"):
        raise UserError("the search has no parameters: give hydra.sweeper.params (see conf/search/) or sweep values on the command line.")
    settings = RLOptunaSweeperConf(**options)
    sweep_dir = Path(config.hydra.sweep.dir)
    launcher = OmegaConf.to_container(config.hydra.launcher, resolve=True) if config.hydra.get("launcher") else None
    if cluster_of(launcher):  # trials as SLURM (or submitit's local) jobs
        run_trial = SubmititTrials(make_executor(launcher, sweep_dir), base)
    else:
        def run_trial(job):
            return run_job(job.as_job(base))
    return SweepRunner(settings, run_trial, sweep_dir=sweep_dir,
                       study_name=settings.study_name or f"{choices.env}-{choices.algorithm}", n_epochs=int(config.trainer.n_epochs))


def check_space(base: list[str], runner: SweepRunner) -> None:
    """Compose and validate trials' command lines (``base`` + values of each searched or fixed key) as train.py
    would, before any trial runs: a UserError names a key the config lacks (and the keys it has), or a value a
    key does not allow (and what it allows), so a space its trials would fail on is refused, not run. The values
    are each key's :func:`~hydrarl.sweep.space.edge_values` (every choice, both ends of a range or interval), in
    as few configurations as the most values a key has. Keys a ``custom_search_space`` hook adds are checked by
    each trial."""
    plain = [o for o in base if not o.startswith("hydra.")]
    global_hydra = GlobalHydra.instance()
    hydra, hydra_cfg = global_hydra.hydra, HydraConfig.instance().cfg
    global_hydra.clear()  # compose starts a Hydra of its own; the sweeper's is put back after
    try:
        for values in probe_values(runner.distributions):
            values = {**runner.fixed, **values}
            compose(merge_overrides(plain, [f"{k}={override_value(v)}" for k, v in values.items()]))
    except UserError as exc:
        raise UserError(f"search space: {exc}") from exc
    finally:
        global_hydra.clear()
        if hydra is not None:
            global_hydra.initialize(hydra)
        HydraConfig.instance().cfg = hydra_cfg  # compose set the probe's; the sweeper's ${hydra:...} stay its own


def _prepare_mlflow(config: DictConfig, sweep_dir: Path) -> None:
    """With the mlflow logger: the store's schema made (once, here, not by the trials at once), and the runs a
    dead sweeper's trials left RUNNING under ``sweep_dir`` ended as KILLED. Called with the sweep dir's lock
    held, so no live process runs a trial there (a re-run adopts them; a fresh one starts a new MLflow run)."""
    if "mlflow" not in (config.get("logger") or {}):
        return
    from hydrarl.trackers.mlflow_tracker import close_stale_runs, prepare_store

    uri = config.logger.mlflow.tracking_uri
    prepare_store(uri)
    closed = close_stale_runs(uri, under=sweep_dir)
    if closed:
        log.warning("%d MLflow run(s) left RUNNING by a sweeper that died closed as KILLED", len(closed))


def report_failures(failed: list[FailedTrial], n_trials: int) -> None:
    """The failed trials on stderr: number, reason and job.log of each (the others are recorded)."""
    print(f"error: {len(failed)} of {n_trials} trials of this search failed (the others ran to their end and are recorded):",
          file=sys.stderr)
    for trial in failed:
        print(f"  trial {trial.number}: {trial.reason}" + (f"  ({trial.log})" if trial.log else ""), file=sys.stderr)


def _shared_parent(runner: SweepRunner, study) -> str | None:
    """The MLflow run id of the study's parent run, if one exists. The process that created the study starts
    it; another process that joins a study so new that the run is not there yet waits for it (up to
    :data:`PARENT_WAIT_SECONDS`, then starts one itself), so processes started together share one parent."""
    deadline = time.time() + (0 if runner.created else PARENT_WAIT_SECONDS)
    while True:
        parent = study.user_attrs.get(PARENT_ATTR)  # read from the storage each time
        if parent or time.time() >= deadline or study.get_trials(deepcopy=False):
            return parent
        time.sleep(0.5)


def _parent_run(config: DictConfig, runner: SweepRunner, study):
    """The study's MLflow run, shared by every process of the study (re-opened on resume); None without
    the mlflow logger."""
    if "mlflow" not in (config.get("logger") or {}):
        return None
    from hydrarl.trackers import RunRecord
    from hydrarl.trackers.mlflow_tracker import MlflowTracker
    from hydrarl.trackers.mlflow_view import publish_view

    mlflow_cfg = config.logger.mlflow
    name = f"search-{runner.study_name}"
    tracker = MlflowTracker(mlflow_cfg.tracking_uri, mlflow_cfg.experiment_name, name, study=runner.study_name)
    settings = {k: v for k, v in asdict(runner.s).items() if k not in ("_target_", "_recursive_")}
    params = flatten({"search": {**settings, "study_name": runner.study_name, "n_epochs": runner.n_epochs}})
    parent = _shared_parent(runner, study)
    tracker.start(RunRecord(runner.sweep_dir, name, params,
                            run_tags({"sweep.study": runner.study_name, "run_dir": runner.sweep_dir}),
                            {"mlflow": parent} if parent else {}))
    if parent is None:
        study.set_user_attr(PARENT_ATTR, tracker.run_id)
    publish_view(tracker.client, tracker.experiment_id, runner.study_name)  # the UI's view of this search's runs
    return tracker


def run_search(config: DictConfig, options: dict[str, Any], arguments: list[str]) -> None:
    """Run (or resume) the search that ``config``, its ``hydra.sweeper`` ``options`` (the fields of
    RLOptunaSweeperConf) and the command line describe. Exits 2 on bad input (nothing recorded), 1 when
    any trial of the study failed (after its results are written)."""
    HydraConfig.instance().set_config(config)
    with ExitStack() as held:
        with exit_now_on_user_error():
            base, space = split_arguments(arguments)
            runner = _runner(config, options, space, base)  # settings and space checked
            check_space(base, runner)
            held.enter_context(runner.locked())  # a live sweeper on this sweep dir: exit 2, naming it
            _prepare_mlflow(config, runner.sweep_dir)  # the lock is ours: what is RUNNING there is a dead sweeper's
            study = runner.open_study()
            parent = _parent_run(config, runner, study)
            if parent is not None:
                runner.extra_trial_cfg["mlflow_parent_run_id"] = parent.run_id
        log.info("search %s in %s: %d trials at most, %d at once; delete %s to stop after the running ones",
                 runner.study_name, runner.sweep_dir, runner.s.n_trials, runner.s.n_jobs, runner.sweep_dir / STOP_FILE)
        status = Status.FAILED
        try:
            study = runner.run(study)
            files = write_results(study, runner, base)
            finished = [t for t in shared.counting(study) if t.state.is_finished()]
            status = Status.FAILED if finished and all(t.state == TrialState.FAIL for t in finished) else Status.COMPLETED
            if parent is not None:
                best = [t for t in study.trials if t.values is not None]
                if best and len(study.directions) == 1:
                    parent.log_metrics({"best_value": study.best_value, "trials": len(study.trials)}, step=len(study.trials))
                for path in files:
                    parent.log_artifact(path, "plots" if path.parent.name == "plots" else None)
            log.info("results: %s", runner.sweep_dir / "optimization_results.yaml")
        except KeyboardInterrupt:
            status = Status.KILLED
            raise
        finally:
            if parent is not None and not shared.others_running(study, runner.owner):  # else the last process to end ends it
                parent.finish(status)
    failed = failed_trials(study)
    if failed:
        report_failures(failed, len(finished))
        sys.exit(1)
