"""The Trainer: epochs of ``learn`` -> evaluate -> trackers -> checkpoint -> early stop.

It owns the loop so that evaluation, checkpointing and early stopping work the same for every
agent; SB3's ``learn`` is called in chunks of ``trainer.eval_after_n_steps`` env steps.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Protocol

import numpy as np
from omegaconf import DictConfig
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hydrarl.errors import UserError
from hydrarl.status import Status
from hydrarl.trackers import Trackers
from hydrarl.training.callbacks import StopFlag, TrainerCallback, capture_sb3_logs, sb3_metrics, schedules_over_run
from hydrarl.training.checkpoint import BEST, LAST, TrainerState, save_checkpoint
from hydrarl.training.evaluation import evaluate
from hydrarl.training.result import TrialResult
from hydrarl.training.seeding import EVAL_SEED_OFFSET
from hydrarl.training.stopping import history_points, last_values, progress, rule_met

log = logging.getLogger("hydrarl")


class EpochReporter(Protocol):
    """Told each epoch's score; answers whether to stop now (a search's pruner: ``hydrarl.sweep.reporter``)."""

    def report(self, value: float | None, step: int) -> bool: ...


def last_epoch(trainer_cfg: DictConfig) -> int:
    """The epoch a run ends at without an early stop: ``trainer.n_epochs``, or ``trainer.epoch_cap`` when lower."""
    cap = trainer_cfg.get("epoch_cap")
    return trainer_cfg.n_epochs if cap is None else min(trainer_cfg.n_epochs, cap)


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

    ``state`` carries counters across resumes; ``run_dir`` receives ``checkpoints/``. ``reporter``
    (inside a search) is told each epoch's score and may end the run as pruned.
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
        reporter: EpochReporter | None = None,
    ):
        self.t = cfg.trainer
        self.env_cfg, self.record = cfg.env, cfg.get("render", "none") == "record"
        self.model, self.env, self.eval_env = model, env, eval_env
        self.trackers, self.state, self.run_id = trackers, state, run_id
        self.checkpoints = Path(run_dir) / "checkpoints"
        self.run_dir = Path(run_dir)
        self.total_steps = self.t.n_epochs * self.t.eval_after_n_steps
        # The epoch this run ends at: trainer.epoch_cap stops it earlier, while its schedules (and the
        # progress bar) still span trainer.n_epochs, so a capped run is the same configuration stopped sooner.
        self.last_epoch = last_epoch(self.t)
        self.sb3_logs = capture_sb3_logs(model)
        schedules_over_run(model, self.total_steps)
        self.reporter = reporter

    # -- one epoch -------------------------------------------------------------------------
    def _learn(self, callback: TrainerCallback) -> dict[str, float]:
        """Train until the epoch's end step; returns the epoch's throughput metrics.

        ``time/steps_per_second`` is env steps per wall-clock second of ``learn``;
        ``time/steps_per_cpu_second`` per second of this process's CPU time, which other load on a
        shared machine disturbs less.
        """
        state = self.state
        if state.epoch_end_step is None:
            state.epoch_end_step = self.model.num_timesteps + self.t.eval_after_n_steps
        before, wall, cpu = self.model.num_timesteps, time.perf_counter(), time.process_time()
        if state.epoch_end_step > before:
            self.model.learn(state.epoch_end_step - before, callback=callback, reset_num_timesteps=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        state.num_timesteps = self.model.num_timesteps
        steps = state.num_timesteps - before
        return {"time/steps_per_second": steps / max(wall, 1e-9), "time/steps_per_cpu_second": steps / max(cpu, 1e-9)}

    def _evaluate(self) -> dict[str, float]:
        if self.t.n_test_rollouts == 0:
            return {}
        sync_envs_normalization(self.env, self.eval_env)
        return evaluate(self.model, self.eval_env, self.t.n_test_rollouts, self._eval_seed())

    def _eval_seed(self) -> int:
        """The seed of this epoch's evaluation episodes (and of its video)."""
        return self.state.seed + EVAL_SEED_OFFSET + self.state.epoch

    def _epoch_metrics(self, throughput: dict[str, float], callback: TrainerCallback) -> dict[str, float]:
        """Evaluation, SB3's own training statistics and timing of the epoch just trained."""
        eval_start = time.perf_counter()
        metrics = self._evaluate()
        metrics.update(sb3_metrics(self.model, self.sb3_logs))
        metrics.update(throughput)
        metrics["time/epoch"] = self.state.epoch
        metrics["time/total_timesteps"] = self.state.num_timesteps
        metrics["time/eval_seconds"] = time.perf_counter() - eval_start
        startup = callback.take_first_step_seconds()
        if startup is not None:
            metrics["time/first_step_seconds"] = startup
            log.info("first env step %.1f s after start", startup)
        return metrics

    def _values(self, name: str) -> list[float]:
        """The last ``early_stop.last_n`` recorded values of a metric."""
        return last_values(self.state.history, name, self.t.early_stop.last_n)

    def _should_stop(self, metric: str) -> bool:
        """The early-stop rule (``hydrarl.training.stopping``) on ``early_stop.metric`` (default: the score)."""
        stop = self.t.early_stop
        return rule_met(self._values(stop.metric or metric), stop.last_n, stop.threshold)

    def _check_metric_names(self, metrics: dict[str, float]) -> None:
        """``trainer.metric`` and ``trainer.early_stop.metric`` against an evaluated epoch's metrics: the
        evaluation logs the same ``eval/*`` names every epoch, so an ``eval/`` name missing from them is
        never logged (a score of None, no best model). A UserError listing what the run does log: the run
        ends FAILED. (Names from other sources were checked before training: ``config.validate.check_metrics``.)"""
        if not any(k.startswith("eval/") for k in metrics):
            return
        for key, name in (("trainer.metric", self.t.metric), ("trainer.early_stop.metric", self.t.early_stop.metric)):
            if name is not None and name.startswith("eval/") and name not in metrics:
                raise UserError(f"{key}={name} is not a metric this run logs; it logs: {', '.join(sorted(metrics))}.")

    def _record(self, metrics: dict[str, float]) -> bool:
        """Append the epoch to the history, update best, early stop and (in a sweep) pruning;
        True if the score improved."""
        self._check_metric_names(metrics)
        state = self.state
        state.history.append(metrics)
        metric = score_metric(self.t.metric, metrics)
        value = metrics.get(metric)
        improved = value is not None and math.isfinite(value) and (state.best_score is None or value > state.best_score)
        if improved:
            state.best_score, state.best_epoch = value, state.epoch
        values = self._values(metric)
        if values:  # the run's score so far (what a search optimises), logged with the epoch
            metrics["score"] = float(np.mean(values))
        state.early_stopped = self._should_stop(metric)
        if self.reporter is not None and not state.early_stopped:
            state.pruned = self.reporter.report(value, state.epoch)
        return improved

    def _checkpoint(self, improved: bool) -> None:
        state = self.state
        if improved:
            save_checkpoint(self.checkpoints / BEST, self.model, self.env, state, full=False)
        save_checkpoint(self.checkpoints / LAST, self.model, self.env, state)
        if self.t.checkpoint_every and state.epoch % self.t.checkpoint_every == 0:
            save_checkpoint(self.checkpoints / f"epoch_{state.epoch:04d}", self.model, self.env, state, full=False)

    def _video(self) -> None:
        """With ``render=record``: an MP4 of the epoch's first evaluation episodes every
        ``trainer.video.every`` epochs and at the run's last epoch, logged to the trackers."""
        state, video = self.state, self.t.video
        last = state.epoch >= self.last_epoch or state.early_stopped or state.pruned
        if not self.record or not (last or state.epoch % video.every == 0):
            return
        from hydrarl.training.video import make_video_env, record_video

        path = self.run_dir / "videos" / f"epoch_{state.epoch:04d}.mp4"
        env = make_video_env(self.env_cfg, self._eval_seed())
        try:
            sync_envs_normalization(self.env, env)
            record_video(self.model, env, path, video.episodes, self._eval_seed())
        finally:
            env.close()
        self.trackers.log_video(path, step=state.num_timesteps)
        log.info("video of %d episode(s) at step %d: %s", video.episodes, state.num_timesteps, path)

    def _report(self, metrics: dict[str, float], improved: bool, bar: tqdm | None) -> None:
        state = self.state
        line = f"epoch {state.epoch}/{self.t.n_epochs} | steps {state.num_timesteps} | {_fmt(metrics)} | {metrics['time/steps_per_second']:.0f} steps/s"
        log.info(line + (" | best" if improved else "") + (" | early stop" if state.early_stopped else "") + (" | pruned" if state.pruned else ""))
        metric = score_metric(self.t.metric, metrics)
        if bar is not None and metric in metrics:
            bar.set_postfix({metric.split("/")[-1]: f"{metrics[metric]:.3g}"}, refresh=False)

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> TrialResult:
        """Run the remaining epochs. Raises Interrupted (after writing ``last``) on SIGINT/SIGTERM."""
        state, t = self.state, self.t
        bar = tqdm(total=self.total_steps, initial=min(state.num_timesteps, self.total_steps), unit="step",
                   dynamic_ncols=True, mininterval=1.0) if t.progress_bar else None
        with StopFlag() as stop, logging_redirect_tqdm():
            callback = TrainerCallback(stop, bar)
            try:
                while state.epoch < self.last_epoch and not (state.early_stopped or state.pruned):
                    throughput = self._learn(callback)
                    if stop:
                        save_checkpoint(self.checkpoints / LAST, self.model, self.env, state)
                        raise Interrupted(f"stopped by signal {stop.signal} at step {state.num_timesteps}; "
                                          f"resume with trainer.resume={self.run_dir}")
                    state.epoch += 1
                    state.epoch_end_step = None
                    metrics = self._epoch_metrics(throughput, callback)
                    improved = self._record(metrics)
                    self.trackers.log_metrics(metrics, step=state.num_timesteps)
                    self._checkpoint(improved)
                    self._report(metrics, improved, bar)
                    self._video()
            finally:
                if bar is not None:
                    bar.close()
        return self._result()

    def _result(self) -> TrialResult:
        state = self.state
        final = state.history[-1] if state.history else {}
        metric = score_metric(self.t.metric, final) if final else None
        values = self._values(metric) if metric else []
        metrics = dict(final)
        if state.best_score is not None:
            metrics["best_score"] = state.best_score
        stop = self.t.early_stop
        reached = progress(history_points(state.history, stop.metric or metric), stop.last_n, stop.threshold) if metric else None
        return TrialResult(
            score=float(np.mean(values)) if values else None,
            epochs_run=state.epoch,
            early_stopped=state.early_stopped,
            status=Status.PRUNED if state.pruned else Status.EARLY_STOPPED if state.early_stopped else Status.COMPLETED,
            run_id=self.run_id,
            metrics=metrics,
            num_timesteps=state.num_timesteps,
            run_dir=str(self.run_dir),
            best_mean=reached.best_mean if reached else None,
            met_at_step=reached.met_at_step if reached else None,
        )
