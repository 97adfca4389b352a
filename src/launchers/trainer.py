"""The Trainer: epochs of ``learn`` -> evaluate -> trackers -> checkpoint -> early stop.

It owns the loop so that evaluation, checkpointing and early stopping work the same for every
agent; SB3's ``learn`` is called in chunks of ``trainer.eval_after_n_steps`` env steps.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hydrarl.launchers.callbacks import StopFlag, TrainerCallback, capture_sb3_logs, sb3_metrics, schedules_over_run
from hydrarl.launchers.checkpoint import TrainerState, save_checkpoint
from hydrarl.launchers.evaluation import evaluate
from hydrarl.launchers.result import TrialResult
from hydrarl.launchers.seeding import EVAL_SEED_OFFSET
from hydrarl.trackers import Trackers

log = logging.getLogger("hydrarl")


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGINT/SIGTERM after a checkpoint was written."""


def score_metric(cfg_metric: str | None, metrics: dict[str, float]) -> str:
    """The metric named in config, else success rate where reported, else mean evaluation reward."""
    if cfg_metric:
        return cfg_metric
    return "eval/success_rate" if "eval/success_rate" in metrics else "eval/mean_reward"


def _fmt(metrics: dict[str, float]) -> str:
    parts = []
    if "eval/success_rate" in metrics:
        parts.append(f"success {metrics['eval/success_rate']:.2f}")
    if "eval/mean_reward" in metrics:
        parts.append(f"return {metrics['eval/mean_reward']:.2f} ± {metrics['eval/std_reward']:.2f}")
        parts.append(f"len {metrics['eval/mean_ep_length']:.0f}")
    return " | ".join(parts)


class Trainer:
    """Runs the epochs of one run and returns its TrialResult.

    ``state`` carries counters across resumes; ``run_dir`` receives ``checkpoints/``.
    """

    def __init__(
        self,
        cfg: DictConfig,
        model: BaseAlgorithm,
        env: VecEnv,
        eval_env: VecEnv,
        trackers: Trackers,
        run_dir: Path,
        state: TrainerState,
        run_id: str | None = None,
    ):
        self.t = cfg.trainer
        self.model, self.env, self.eval_env = model, env, eval_env
        self.trackers, self.state, self.run_id = trackers, state, run_id
        self.checkpoints = Path(run_dir) / "checkpoints"
        self.run_dir = Path(run_dir)
        self.total_steps = self.t.n_epochs * self.t.eval_after_n_steps
        self.sb3_logs = capture_sb3_logs(model)
        schedules_over_run(model, self.total_steps)

    # -- one epoch -------------------------------------------------------------------------
    def _learn(self, callback: TrainerCallback) -> float:
        """Train until the epoch's end step; returns seconds spent."""
        state = self.state
        if state.epoch_end_step is None:
            state.epoch_end_step = self.model.num_timesteps + self.t.eval_after_n_steps
        remaining = state.epoch_end_step - self.model.num_timesteps
        start = time.perf_counter()
        if remaining > 0:
            self.model.learn(remaining, callback=callback, reset_num_timesteps=False)
        return time.perf_counter() - start

    def _evaluate(self) -> dict[str, float]:
        if self.t.n_test_rollouts == 0:
            return {}
        sync_envs_normalization(self.env, self.eval_env)
        seed = self.state.seed + EVAL_SEED_OFFSET + self.state.epoch
        return evaluate(self.model, self.eval_env, self.t.n_test_rollouts, seed)

    def _should_stop(self, metric: str) -> bool:
        threshold = self.t.early_stop.threshold
        if threshold is None:
            return False
        name = self.t.early_stop.metric or metric
        values = [h[name] for h in self.state.history if name in h][-self.t.early_stop.last_n :]
        return len(values) == self.t.early_stop.last_n and float(np.mean(values)) >= threshold

    def _score(self, metric: str) -> float | None:
        values = [h[metric] for h in self.state.history if metric in h][-self.t.early_stop.last_n :]
        return float(np.mean(values)) if values else None

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> TrialResult:
        state, t = self.state, self.t
        bar = None
        if t.progress_bar:
            bar = tqdm(total=self.total_steps, initial=min(self.model.num_timesteps, self.total_steps), unit="step", dynamic_ncols=True, mininterval=1.0)
        with StopFlag() as stop, logging_redirect_tqdm():
            callback = TrainerCallback(stop, bar)
            reported_startup = False
            try:
                while state.epoch < t.n_epochs and not state.early_stopped:
                    learn_seconds = self._learn(callback)
                    state.num_timesteps = self.model.num_timesteps
                    if stop:
                        save_checkpoint(self.checkpoints / "last", self.model, self.env, state)
                        raise Interrupted(f"stopped by signal {stop.signal} at step {state.num_timesteps}; resume with trainer.resume={self.run_dir}")
                    steps = t.eval_after_n_steps
                    state.epoch += 1
                    state.epoch_end_step = None
                    eval_start = time.perf_counter()
                    metrics = self._evaluate()
                    metrics.update(sb3_metrics(self.model, self.sb3_logs))
                    metrics.update({
                        "time/epoch": state.epoch,
                        "time/steps_per_second": steps / max(learn_seconds, 1e-9),
                        "time/eval_seconds": time.perf_counter() - eval_start,
                    })
                    if callback.first_step_seconds is not None and not reported_startup:
                        metrics["time/first_step_seconds"] = callback.first_step_seconds
                        log.info("first env step %.1f s after start", callback.first_step_seconds)
                        reported_startup = True
                    metric = score_metric(t.metric, metrics)
                    state.history.append(metrics)
                    value = metrics.get(metric)
                    improved = value is not None and math.isfinite(value) and (state.best_score is None or value > state.best_score)
                    if improved:
                        state.best_score, state.best_epoch = value, state.epoch
                        save_checkpoint(self.checkpoints / "best", self.model, self.env, state, full=False)
                    state.early_stopped = self._should_stop(metric)
                    self.trackers.log_metrics(metrics, step=state.num_timesteps)
                    save_checkpoint(self.checkpoints / "last", self.model, self.env, state)
                    if t.checkpoint_every and state.epoch % t.checkpoint_every == 0:
                        save_checkpoint(self.checkpoints / f"epoch_{state.epoch:04d}", self.model, self.env, state, full=False)
                    line = f"epoch {state.epoch}/{t.n_epochs} | steps {state.num_timesteps} | {_fmt(metrics)} | {metrics['time/steps_per_second']:.0f} steps/s"
                    log.info(line + (" | best" if improved else "") + (" | early stop" if state.early_stopped else ""))
                    if bar is not None and value is not None:
                        bar.set_postfix({metric.split("/")[-1]: f"{value:.3g}"}, refresh=False)
            finally:
                if bar is not None:
                    bar.close()
        status = "early_stopped" if state.early_stopped else "completed"
        final = state.history[-1] if state.history else {}
        metric = score_metric(t.metric, final) if final else None
        metrics = {**final, "best_score": state.best_score} if state.best_score is not None else dict(final)
        return TrialResult(
            score=self._score(metric) if metric else None,
            epochs_run=state.epoch,
            early_stopped=state.early_stopped,
            status=status,
            run_id=self.run_id,
            metrics=metrics,
            num_timesteps=state.num_timesteps,
            run_dir=str(self.run_dir),
        )
