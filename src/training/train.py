"""One run: config -> env -> agent -> Trainer -> TrialResult, recorded by the trackers.

Everything that can be wrong with the input (values, env, algorithm, their pairing, a missing
extra) is found before any tracker run is opened or any training step taken.

A run holds the lock of its run directory (``hydrarl.locks``) from before it records anything until it
ends: a second process there is refused, and a RUNNING MLflow run whose directory nobody holds is known to
be dead (``close_stale_runs``, called here for this directory before the run starts). A crash ends the
tracker runs FAILED with a one-line cause, whatever else fails on the way (a full disk).
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.utils import set_random_seed

from hydrarl.agents.factory import apply_env_overrides, build_agent
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import UserError
from hydrarl.locks import DirLock
from hydrarl.runinfo import flatten, run_tags
from hydrarl.status import Status
from hydrarl.trackers import RunRecord, Trackers, make_trackers
from hydrarl.training.backends import set_up_backends
from hydrarl.training.checkpoint import (
    BEST,
    LAST,
    MODEL,
    NORMALIZATION,
    TrainerState,
    checkpoint_candidates,
    load_newest_checkpoint,
    load_normalization,
    resume_seed,
)
from hydrarl.training.result import ERROR_FILE, RESULT_FILE, TrialResult, write_atomic
from hydrarl.training.seeding import EVAL_SEED_OFFSET, draw_seed
from hydrarl.training.trainer import EpochReporter, Interrupted, Trainer

log = logging.getLogger("hydrarl")


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; a UserError for cuda on a machine without it."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.device={device} but torch sees no CUDA device here; use trainer.device=cpu or auto.")
    return device


def _restore_policy(model, path: str, env) -> None:
    """Load the weights of a saved model into the freshly built one (a new run starting from them), and the
    normalisation statistics saved beside it into ``env``, in place."""
    source = Path(path)
    if not source.is_file():
        raise UserError(f"restore_policy={path}: no such model file (give the path of a model.zip).")
    try:
        model.set_parameters(str(source), exact_match=True, device=model.device)
    except (ValueError, RuntimeError, KeyError) as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise UserError(f"restore_policy={path} does not fit the algorithm and env of this run (a policy trained with "
                        f"the same algorithm, action space and observation shape is needed): {first}") from None
    load_normalization(source.parent, env)


def _sweep_tags(cfg: DictConfig) -> dict[str, str]:
    """A sweep trial's run is a child of the study's MLflow run."""
    trial = cfg.get("trial")
    if not trial:
        return {}
    tags = {"sweep.study": trial.study_name, "sweep.trial": trial.get("number", trial.trial_id)}
    if trial.get("mlflow_parent_run_id"):
        tags["mlflow.parentRunId"] = trial.mlflow_parent_run_id
    return tags


def _log_artifacts(trackers, run_dir: Path) -> None:
    trackers.log_artifact(run_dir / "config.yaml")
    for label, directory in (("best_model", run_dir / "checkpoints" / BEST), ("final_model", run_dir / "checkpoints" / LAST)):
        trackers.log_model(directory / MODEL, label)
        trackers.log_model(directory / NORMALIZATION, label)
    for log_file in sorted(run_dir.glob("*.log")):
        trackers.log_artifact(log_file, "logs")


def _prepare(cfg: DictConfig, run_dir: Path):
    """Seed, envs and agent (fresh, resumed or restored), with every input check done.

    Returns ``(env, eval_env, model, state, device)``; the caller closes the envs.
    """
    t = cfg.trainer
    candidates = checkpoint_candidates(Path(t.resume)) if t.resume else []
    if not candidates and (run_dir / "checkpoints").exists():
        raise UserError(f"{run_dir} already holds a run; resume it with trainer.resume={run_dir} or start a new run.")
    seed = resume_seed(candidates) if candidates else (cfg.seed if cfg.seed is not None else draw_seed())
    device = resolve_device(str(t.device))
    set_up_backends(t.torch_threads, device)
    set_random_seed(seed)
    for line in apply_env_overrides(cfg.algorithm, cfg.env, cfg.algorithm_name):
        log.info(line)
    env = make_vec_env(cfg.env, seed)
    eval_env = make_vec_env(cfg.env, seed + EVAL_SEED_OFFSET, n_envs=1, training=False)
    try:
        model = build_agent(cfg.algorithm, env, seed, device, name=cfg.algorithm_name, env_name=cfg.env_name)
        if candidates:
            model, state, used = load_newest_checkpoint(candidates, type(model), env, device)
            log.info("resuming %s from %s: epoch %d, step %d", run_dir, used.name, state.epoch, state.num_timesteps)
            # the resumed run starts new episodes: from other initial states than the run's first ones (and the
            # same ones for every resume from this checkpoint)
            env.seed(seed + state.num_timesteps)
        else:
            state = TrainerState(seed=seed)
            if cfg.restore_policy:
                _restore_policy(model, cfg.restore_policy, env)
    except BaseException:
        env.close()
        eval_env.close()
        raise
    return env, eval_env, model, state, device


def _close_stale(cfg: DictConfig, run_dir: Path) -> None:
    """End as KILLED the MLflow runs a dead process left RUNNING in ``run_dir`` (before this run takes it)."""
    options = (cfg.get("logger") or {}).get("mlflow")
    if options is None:
        return
    from hydrarl.trackers.mlflow_tracker import close_stale_runs

    try:
        close_stale_runs(options.tracking_uri, under=run_dir, report=log.warning)
    except Exception as exc:  # noqa: BLE001 - the store is checked, with a clear error, when the tracker opens it
        log.warning("could not look for stale runs in %s: %s", options.tracking_uri, _one_line(exc))


def _one_line(exc: BaseException) -> str:
    """``<type>: <first line of the message>`` (a UserError: its message, written for the user): the cause
    of a failure, fit for a tag and a log line."""
    lines = str(exc).strip().splitlines()
    if isinstance(exc, UserError) and lines:
        return lines[0]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _record_failure(exc: Exception, trackers: Trackers, run_dir: Path, state: TrainerState) -> None:
    """After a crash: print its one-line cause; write ``error.txt`` (the traceback) and a failed
    ``trial_result.json``; give the trackers the cause and ``error.txt``; end their runs FAILED. Each step
    is tried whatever happened to the others (a full disk fails the writes, not the tracker runs' end)."""
    cause, details = _one_line(exc), traceback.format_exc()
    log.error("run failed: %s (traceback in %s)", cause, run_dir / ERROR_FILE)
    steps = (
        (ERROR_FILE, lambda: write_atomic(run_dir / ERROR_FILE, details)),
        (RESULT_FILE, lambda: TrialResult(None, state.epoch, False, Status.FAILED, state.tracker_ids.get("mlflow"),
                                          num_timesteps=state.num_timesteps, run_dir=str(run_dir), error=details).write(run_dir)),
        ("the cause on the tracker runs", lambda: trackers.record_error(cause)),
        (f"{ERROR_FILE} on the tracker runs", lambda: trackers.log_artifact(run_dir / ERROR_FILE)),
        ("the end of the tracker runs", lambda: trackers.finish(Status.FAILED)),
    )
    for what, step in steps:
        try:
            step()
        except Exception as err:  # noqa: BLE001 - the next steps are tried regardless
            log.error("after the failure, %s could not be recorded: %s", what, _one_line(err))


def run(cfg: DictConfig, run_dir: Path, reporter: EpochReporter | None = None) -> TrialResult:
    """Train as ``cfg`` (composed and validated by ``hydrarl.config.compose``) says, writing checkpoints
    under ``run_dir``; return the TrialResult, also written to ``<run_dir>/trial_result.json`` (atomically)
    once the run has ended (a crash's too, with status failed), for callers in other processes (a
    search, the regression matrix); an interrupted run has none.
    ``reporter``: see ``Trainer``.

    Holds the lock of ``run_dir`` throughout (a UserError if a live process holds it). Raises UserError for
    bad input (before anything is recorded), Interrupted when stopped by a signal (after a checkpoint), and
    re-raises any crash after marking the tracker runs FAILED (tag ``hydrarl.error`` on MLflow: the cause).
    """
    run_dir = Path(run_dir).absolute()  # the run_dir tag: where close_stale_runs finds the lock, from anywhere
    _close_stale(cfg, run_dir)
    lock = DirLock(run_dir, "run directory").acquire()
    try:
        return _run(cfg, run_dir, reporter)
    finally:
        lock.release()


def _run(cfg: DictConfig, run_dir: Path, reporter: EpochReporter | None) -> TrialResult:
    """:func:`run` with the run directory's lock held."""
    env, eval_env, model, state, device = _prepare(cfg, run_dir)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        resolved["seed"] = state.seed
        trackers = make_trackers(cfg.logger, run_dir)  # a bad logger option fails here, before anything is written
        (run_dir / RESULT_FILE).unlink(missing_ok=True)  # a resumed run's earlier result no longer holds
        write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
        trackers.start(RunRecord(
            run_dir=run_dir,
            run_name=f"{cfg.env_name}-{cfg.algorithm_name}" + (f"-trial{cfg.trial.number}" if cfg.get("trial") else "") + f"-seed{state.seed}",
            params={**flatten(resolved), "device_used": device},
            tags=run_tags({"env": cfg.env_name, "algorithm": cfg.algorithm_name, "seed": state.seed, "run_dir": run_dir, **_sweep_tags(cfg)}),
            resume_ids=state.tracker_ids,
        ))
        state.tracker_ids = trackers.ids
        try:
            trainer = Trainer(cfg, model, env, eval_env, trackers, run_dir, state, run_id=state.tracker_ids.get("mlflow"),
                              reporter=reporter)
            result = trainer.fit()
            result.write(run_dir)
        except Interrupted:
            _log_artifacts(trackers, run_dir)
            trackers.finish(Status.KILLED)
            raise
        except KeyboardInterrupt:
            trackers.finish(Status.KILLED)
            raise
        except Exception as exc:
            _record_failure(exc, trackers, run_dir, state)
            raise
        _log_artifacts(trackers, run_dir)
        trackers.finish(result.status)
        return result
    finally:
        env.close()
        eval_env.close()
