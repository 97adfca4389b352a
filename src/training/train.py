"""One run: config -> env -> agent -> Trainer -> TrialResult, recorded by the trackers.

Everything that can be wrong with the input (values, env, algorithm, their pairing, a missing
extra) is found before any tracker run is opened or any training step taken.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.utils import set_random_seed

from hydrarl.agents.factory import build_agent
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import UserError
from hydrarl.runinfo import flatten, run_tags
from hydrarl.status import Status
from hydrarl.trackers import RunRecord, make_trackers
from hydrarl.training.checkpoint import (
    MODEL,
    NORMALIZATION,
    STATE,
    TrainerState,
    find_last_checkpoint,
    load_checkpoint,
    load_normalization,
)
from hydrarl.training.result import RESULT_FILE, TrialResult
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
        raise UserError(f"restore_policy={path} does not fit algorithm/env of this run: {exc}") from exc
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
    for label, directory in (("best_model", run_dir / "checkpoints" / "best"), ("final_model", run_dir / "checkpoints" / "last")):
        trackers.log_model(directory / MODEL, label)
        trackers.log_model(directory / NORMALIZATION, label)
    for log_file in sorted(run_dir.glob("*.log")):
        trackers.log_artifact(log_file, "logs")


def _prepare(cfg: DictConfig, run_dir: Path):
    """Seed, envs and agent (fresh, resumed or restored), with every input check done.

    Returns ``(env, eval_env, model, state, device)``; the caller closes the envs.
    """
    t = cfg.trainer
    resume_from = find_last_checkpoint(Path(t.resume)) if t.resume else None
    if resume_from is None and (run_dir / "checkpoints").exists():
        raise UserError(f"{run_dir} already holds a run; resume it with trainer.resume={run_dir} or start a new run.")
    state = TrainerState.load(resume_from / STATE) if resume_from else None
    seed = state.seed if state else (cfg.seed if cfg.seed is not None else draw_seed())
    device = resolve_device(str(t.device))
    torch.set_num_threads(t.torch_threads)
    set_random_seed(seed)
    env = make_vec_env(cfg.env, seed)
    eval_env = make_vec_env(cfg.env, seed + EVAL_SEED_OFFSET, n_envs=1, training=False)
    try:
        model = build_agent(cfg.algorithm, env, seed, device, name=cfg.algorithm_name, env_name=cfg.env_name)
        if resume_from:
            env = load_normalization(resume_from, env)
            model, state = load_checkpoint(resume_from, type(model), env, device)
            log.info("resuming %s from epoch %d, step %d", run_dir, state.epoch, state.num_timesteps)
        else:
            state = TrainerState(seed=seed)
            if cfg.restore_policy:
                _restore_policy(model, cfg.restore_policy, env)
    except BaseException:
        env.close()
        eval_env.close()
        raise
    return env, eval_env, model, state, device


def run(cfg: DictConfig, run_dir: Path, reporter: EpochReporter | None = None) -> TrialResult:
    """Train as ``cfg`` (composed and validated by ``hydrarl.config.compose``) says, writing checkpoints
    under ``run_dir``; return the TrialResult, also written to ``<run_dir>/trial_result.json`` (atomically)
    once the run has ended (a crash's too, with status failed), for callers in other processes (a
    search, the regression matrix); an interrupted run has none.
    ``reporter``: see ``Trainer``.

    Raises UserError for bad input (before anything is recorded), Interrupted when stopped by a
    signal (after a checkpoint), and re-raises any crash after marking the tracker runs FAILED.
    """
    run_dir = Path(run_dir)
    env, eval_env, model, state, device = _prepare(cfg, run_dir)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        resolved["seed"] = state.seed
        trackers = make_trackers(cfg.logger, run_dir)  # a bad logger option fails here, before anything is written
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RESULT_FILE).unlink(missing_ok=True)  # a resumed run's earlier result no longer holds
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
        trackers.start(RunRecord(
            run_dir=run_dir,
            run_name=f"{cfg.env_name}-{cfg.algorithm_name}" + (f"-trial{cfg.trial.number}" if cfg.get("trial") else "") + f"-seed{state.seed}",
            params={**flatten(resolved), "device_used": device},
            tags=run_tags({"env": cfg.env_name, "algorithm": cfg.algorithm_name, "seed": state.seed, "run_dir": run_dir, **_sweep_tags(cfg)}),
            resume_ids=state.tracker_ids,
        ))
        state.tracker_ids = trackers.ids
        trainer = Trainer(cfg, model, env, eval_env, trackers, run_dir, state, run_id=state.tracker_ids.get("mlflow"),
                          reporter=reporter)
        try:
            result = trainer.fit()
        except Interrupted:
            _log_artifacts(trackers, run_dir)
            trackers.finish(Status.KILLED)
            raise
        except KeyboardInterrupt:
            trackers.finish(Status.KILLED)
            raise
        except Exception:
            (run_dir / "error.txt").write_text(traceback.format_exc())
            TrialResult(None, state.epoch, False, Status.FAILED, state.tracker_ids.get("mlflow"), num_timesteps=state.num_timesteps,
                        run_dir=str(run_dir), error=traceback.format_exc()).write(run_dir)
            trackers.log_artifact(run_dir / "error.txt")
            trackers.finish(Status.FAILED)
            raise
        _log_artifacts(trackers, run_dir)
        trackers.finish(result.status)
        result.write(run_dir)
        return result
    finally:
        env.close()
        eval_env.close()
