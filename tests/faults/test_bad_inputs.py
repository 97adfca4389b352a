"""The bad-input campaign: every entry point, given input a new user might type, ends with exit status 2,
exactly one line on stderr (``error: ...`` naming what was wrong), no traceback, no process left behind,
and nothing recorded (no run or output directory, no MLflow run, no study, a resumed run untouched).

One table, ``CASES``: (case id, command, arguments, words the message must contain). Commands are the
real scripts — ``experiment/train.py`` (single runs, grids, ``+search=`` searches, resume),
``experiment/evaluate.py``, ``experiment/plot.py``, ``experiment/plot_gait.py``, ``./run_testing.sh``
(``python -m hydrarl.launchers.run_testing``) and the PenguinPi simulator (``python -m
hydrarl.envs.penguinpi.sim_server``) — each run as its own process, forked from a helper that has the
imports done (``tests/faults/forkrun.py``), so the ~200 processes cost seconds, not minutes.

Placeholders in arguments: ``{run}``/``{sweep}``/``{out}`` where the case's output would go (absent before,
and must stay absent), ``{ro}`` a read-only folder, ``{file}`` a regular file, ``{notrun}`` an existing folder
that is no run, ``{trained}`` a copy of a real trained Pendulum/sac run (must stay unchanged), ``{corrupt}`` another copy whose
only resumable ``model.zip`` is truncated, ``{store}``
the URI of a copy of an MLflow store holding that run (its run count must not change), ``{busy_port}`` a
port something listens on. Every case runs with ``MLFLOW_TRACKING_URI`` set to that store copy.
Unless a case sets them: train commands get ``env=Pendulum algorithm=sac``, tiny trainer settings (so a
wrongly accepted input ends quickly) and ``hydra.run.dir={run}``/``hydra.sweep.dir={sweep}``; searches also
get 2 trials on 1 worker; the tools get ``--out {out}`` (``-o {out}``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import sqlite3
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.faults.forkrun import PROJECT_ROOT, ForkRunner
from tests.helpers.disks import IS_ROOT, readonly_dir


class Case(NamedTuple):
    id: str
    command: str
    args: tuple[str, ...]
    needles: tuple[str, ...] = ()
    timeout: float = 60


def case(id: str, command: str, *args: str, needs: tuple[str, ...] | str = ()) -> Case:
    return Case(id, command, tuple(args), (needs,) if isinstance(needs, str) else tuple(needs),
                timeout=8 if command == "sim_server" else 60)


SEARCH = ("--multirun", "+search=Pendulum/sac")

CASES = [
    # -- train: names ------------------------------------------------------------------------------------
    case("train-unknown-env", "train", "env=Nope", needs=("env=Nope", "Pendulum")),
    case("train-unknown-algorithm", "train", "algorithm=nope", needs=("algorithm=nope", "sac")),
    case("train-unknown-logger", "train", "logger=[nope]", needs=("nope", "mlflow")),
    case("train-unknown-logger-plain", "train", "logger=wandb", needs=("wandb", "mlflow")),
    case("train-unknown-key", "train", "nonsense=1", needs="nonsense"),
    case("train-misspelt-trainer-key", "train", "trainer.epochs=3", needs=("trainer.epochs", "n_epochs")),
    case("train-unknown-algorithm-argument", "train", "+algorithm.colour=red", needs="colour"),
    case("train-unknown-env-kwarg", "train", "+env.kwargs.gravity_x=3", needs="gravity_x"),
    case("train-old-key-trainer-seed", "train", "+trainer.seed=3", needs="seed=3"),
    case("train-sweep-without-multirun", "train", "env=Pendulum,CartPole", needs="--multirun"),
    case("train-unparsable-override", "train", "trainer.n_epochs=[1,", needs="trainer.n_epochs"),
    # -- train: pairings -------------------------------------------------------------------------------
    case("train-pair-pendulum-dqn", "train", "env=Pendulum", "algorithm=dqn", needs=("algorithm=dqn", "env=Pendulum")),
    case("train-pair-cartpole-td3", "train", "env=CartPole", "algorithm=td3", needs=("algorithm=td3", "env=CartPole")),
    case("train-pair-pendulum-sac_her", "train", "env=Pendulum", "algorithm=sac_her", needs="env=Pendulum"),
    case("train-pair-fetchreach-ars", "train", "env=FetchReach", "algorithm=ars", needs="algorithm=ars"),
    # (formerly the train CLI's own bad-input list, tests/launchers/test_cli.py)
    case("train-old-key-trainer-seed-plain", "train", "trainer.seed=3", needs="trainer.seed"),
    case("train-policy_kwargs-new-key", "train", "env=Pendulum", "algorithm=sac",
         "algorithm.policy_kwargs={net_arch:[8],n_critics:1}",
         needs=("may only set the keys algorithm.policy_kwargs has (net_arch)", "+algorithm.policy_kwargs.<new key>")),
    case("train-unknown-algorithm-her-variant", "train", "env=CartPole", "algorithm=ppo_her", needs="algorithm=ppo_her is unknown"),
    case("train-unknown-algorithm-argument-listed", "train", "env=Pendulum", "algorithm=sac", "+algorithm.colour=red",
         needs=("no argument colour", "learning_rate")),
    case("train-restore_policy-missing-sac", "train", "env=Pendulum", "algorithm=sac", "restore_policy=/nowhere/model.zip",
         needs="restore_policy=/nowhere/model.zip"),
    case("train-batch_size-negative-sac", "train", "env=Pendulum", "algorithm=sac", "algorithm.batch_size=-4",
         needs="algorithm.batch_size=-4 is not allowed: an integer >= 1"),
    case("train-gamma-above-one-sac", "train", "env=Pendulum", "algorithm=sac", "algorithm.gamma=1.5",
         needs="algorithm.gamma=1.5 is not allowed: a number in [0, 1]"),
    case("train-mlflow-file-store-sac", "train", "env=Pendulum", "algorithm=sac", "logger.mlflow.tracking_uri=file:///tmp/old-mlruns",
         needs=("cannot be opened", "sqlite:///")),
    # -- train: trainer values -------------------------------------------------------------------------
    case("train-n_epochs-zero", "train", "trainer.n_epochs=0", needs="trainer.n_epochs"),
    case("train-n_epochs-negative", "train", "trainer.n_epochs=-1", needs="trainer.n_epochs"),
    case("train-n_epochs-word", "train", "trainer.n_epochs=many", needs="trainer.n_epochs"),
    case("train-n_epochs-float", "train", "trainer.n_epochs=1.5", needs="trainer.n_epochs"),
    case("train-eval_after_n_steps-zero", "train", "trainer.eval_after_n_steps=0", needs="trainer.eval_after_n_steps"),
    case("train-eval_after_n_steps-negative", "train", "trainer.eval_after_n_steps=-100", needs="trainer.eval_after_n_steps"),
    case("train-eval_after_n_steps-word", "train", "trainer.eval_after_n_steps=lots", needs="trainer.eval_after_n_steps"),
    case("train-n_test_rollouts-negative", "train", "trainer.n_test_rollouts=-1", needs="trainer.n_test_rollouts"),
    case("train-checkpoint_every-negative", "train", "trainer.checkpoint_every=-1", needs="trainer.checkpoint_every"),
    case("train-torch_threads-zero", "train", "trainer.torch_threads=0", needs="trainer.torch_threads"),
    case("train-epoch_cap-zero", "train", "trainer.epoch_cap=0", needs="trainer.epoch_cap"),
    case("train-early_stop-last_n-zero", "train", "trainer.early_stop.last_n=0", needs="trainer.early_stop.last_n"),
    case("train-early_stop-threshold-word", "train", "trainer.early_stop.threshold=high", needs="trainer.early_stop.threshold"),
    case("train-video-every-zero", "train", "trainer.video.every=0", needs="trainer.video.every"),
    case("train-render-unknown", "train", "render=video", needs=("render", "record")),
    case("train-seed-negative", "train", "seed=-1", needs="seed"),
    case("train-seed-word", "train", "seed=abc", needs="seed"),
    case("train-seed-float", "train", "seed=1.5", needs="seed"),
    case("train-device-unknown", "train", "trainer.device=tpu", needs=("trainer.device", "cpu")),
    case("train-device-gpu-word", "train", "trainer.device=gpu", needs=("trainer.device", "cuda")),
    case("train-device-bad-index", "train", "trainer.device=cuda:x", needs="trainer.device"),
    case("train-device-cpu-index", "train", "trainer.device=cpu:1", needs="trainer.device"),
    case("train-metric-unknown", "train", "trainer.metric=eval/nope", needs=("eval/nope", "eval/mean_reward")),
    case("train-early_stop-metric-unknown", "train", "trainer.early_stop.metric=nope", "trainer.early_stop.threshold=0",
         needs=("nope", "eval/mean_reward")),
    # -- train: env values -----------------------------------------------------------------------------
    case("train-n_envs-zero", "train", "env.n_envs=0", needs="env.n_envs"),
    case("train-n_envs-negative", "train", "env.n_envs=-2", needs="env.n_envs"),
    case("train-vec_env-unknown", "train", "env.vec_env=threads", needs=("env.vec_env", "subproc")),
    case("train-max_episode_steps-zero", "train", "env.max_episode_steps=0", needs="env.max_episode_steps"),
    case("train-wrappers-not-list", "train", "env.wrappers=5", needs="env.wrappers"),
    case("train-wrapper-only-unknown", "train", "env.wrappers=[{_target_: gymnasium.wrappers.ClipAction, only: test}]",
         needs="only"),
    case("train-wrapper-unknown-target", "train", "env.wrappers=[{_target_: nowhere.Wrapper}]", needs="nowhere.Wrapper"),
    case("train-penguinpi-speed-too-high", "train", "env=PenguinPi", "env.kwargs.max_speed=500", "algorithm.buffer_size=1000", needs="max_speed"),
    case("train-penguinpi-step_time-negative", "train", "env=PenguinPi", "env.kwargs.step_time=-1", "algorithm.buffer_size=1000", needs="step_time"),
    case("train-penguinpi-robot_url-bad", "train", "env=PenguinPi", "env.kwargs.robot_url=robot", "algorithm.buffer_size=1000", needs="robot_url"),
    # -- train: algorithm (constructor) values ---------------------------------------------------------
    case("train-batch_size-zero", "train", "algorithm.batch_size=0", needs="algorithm.batch_size"),
    case("train-batch_size-negative", "train", "algorithm.batch_size=-64", needs="algorithm.batch_size"),
    case("train-batch_size-word", "train", "algorithm.batch_size=big", needs="algorithm.batch_size"),
    case("train-gamma-above-1", "train", "algorithm.gamma=1.5", needs="algorithm.gamma"),
    case("train-gamma-negative", "train", "algorithm.gamma=-0.1", needs="algorithm.gamma"),
    case("train-buffer_size-zero", "train", "algorithm.buffer_size=0", needs="algorithm.buffer_size"),
    case("train-buffer_size-negative", "train", "algorithm.buffer_size=-1", needs="algorithm.buffer_size"),
    case("train-learning_rate-negative", "train", "algorithm.learning_rate=-0.001", needs="algorithm.learning_rate"),
    case("train-learning_rate-word", "train", "algorithm.learning_rate=fast", needs="algorithm.learning_rate"),
    case("train-tau-above-1", "train", "algorithm.tau=2", needs="algorithm.tau"),
    case("train-train_freq-zero", "train", "algorithm.train_freq=0", needs="algorithm.train_freq"),
    case("train-net_arch-negative", "train", "algorithm.policy_kwargs.net_arch=[-64]", needs="net_arch"),
    case("train-ppo-n_steps-zero", "train", "algorithm=ppo", "algorithm.n_steps=0", needs="algorithm.n_steps"),
    case("train-ppo-batch_size-one", "train", "algorithm=ppo", "algorithm.batch_size=1", needs="algorithm.batch_size"),
    case("train-ppo-gae_lambda-above-1", "train", "algorithm=ppo", "algorithm.gae_lambda=1.5", needs="algorithm.gae_lambda"),
    case("train-ppo-n_epochs-zero", "train", "algorithm=ppo", "algorithm.n_epochs=0", needs="algorithm.n_epochs"),
    case("train-ppo-clip_range-negative", "train", "algorithm=ppo", "algorithm.clip_range=-0.2", needs="algorithm.clip_range"),
    case("train-dqn-exploration_fraction-above-1", "train", "env=CartPole", "algorithm=dqn", "algorithm.exploration_fraction=2",
         needs="algorithm.exploration_fraction"),
    # -- train: files and folders ----------------------------------------------------------------------
    case("train-restore_policy-missing", "train", "restore_policy=/nowhere/model.zip", needs="restore_policy=/nowhere/model.zip"),
    case("train-restore_policy-not-zip", "train", "restore_policy={file}", needs="restore_policy"),
    case("train-restore_policy-dir", "train", "restore_policy={notrun}", needs="restore_policy"),
    case("train-restore_policy-other-env", "train", "env=MountainCarContinuous", "restore_policy={trained}/checkpoints/last/model.zip",
         needs="restore_policy"),
    case("train-resume-missing", "train", "trainer.resume=/nowhere", needs=("trainer.resume", "/nowhere")),
    case("train-resume-corrupt-model", "train", "trainer.resume={corrupt}",
         needs=("model.zip is unreadable (", "start it over with its command without trainer.resume")),
    case("train-resume-not-a-run", "train", "trainer.resume={notrun}", needs="trainer.resume"),
    case("train-resume-a-file", "train", "trainer.resume={file}", needs="trainer.resume"),
    case("train-resume-change-env", "train", "trainer.resume={trained}", "env=CartPole", needs=("trainer.resume", "env")),
    case("train-resume-change-algorithm", "train", "trainer.resume={trained}", "algorithm=td3", needs=("trainer.resume", "algorithm")),
    case("train-resume-bad-value", "train", "trainer.resume={trained}", "trainer.n_epochs=0", needs="trainer.n_epochs"),
    case("train-resume-with-multirun", "train", "--multirun", "trainer.resume={trained}", "seed=1,2", needs="trainer.resume"),
    case("train-run-dir-read-only", "train", "hydra.run.dir={ro}/run", needs=("hydra.run.dir", "cannot be written")),
    case("train-run-dir-under-a-file", "train", "hydra.run.dir={file}/run", needs="hydra.run.dir"),
    case("train-mlflow-file-store", "train", "logger.mlflow.tracking_uri=file://{tmp}/mlruns", needs=("tracking_uri", "sqlite")),
    case("train-mlflow-store-read-only", "train", "logger.mlflow.tracking_uri=sqlite:///{ro}/mlflow.db", needs="tracking_uri"),
    case("train-comet-mode-unknown", "train", "logger=[comet]", "logger.comet.mode=sometimes", needs=("logger.comet.mode", "offline")),
    case("train-csv-filename-in-read-only", "train", "logger=[csv]", "logger.csv.filename={ro}/progress.csv", needs="logger.csv.filename"),
    # -- train: grids (--multirun without a search) ----------------------------------------------------
    case("grid-unknown-env-value", "train", "--multirun", "env=Pendulum,Nope", needs=("env=Nope", "Pendulum")),
    case("grid-bad-seed-value", "train", "--multirun", "seed=1,-1", needs="seed"),
    case("grid-bad-n_epochs-value", "train", "--multirun", "trainer.n_epochs=1,0", needs="trainer.n_epochs"),
    case("grid-unknown-key", "train", "--multirun", "nonsense=1,2", needs="nonsense"),
    case("grid-sweep-dir-read-only", "train", "--multirun", "seed=1,2", "hydra.sweep.dir={ro}/grid", needs="hydra.sweep.dir"),
    # -- train: searches (+search=<Env>/<algo>) --------------------------------------------------------
    case("search-unknown-preset", "train", "--multirun", "+search=Pendulum/nope", needs=("Pendulum/nope", "Pendulum/sac")),
    case("search-unknown-env-preset", "train", "--multirun", "+search=Nope/sac", needs=("Nope/sac", "Pendulum/sac")),
    case("search-n_trials-zero", "train", *SEARCH, "hydra.sweeper.n_trials=0", needs="n_trials"),
    case("search-n_trials-negative", "train", *SEARCH, "hydra.sweeper.n_trials=-3", needs="n_trials"),
    case("search-n_jobs-zero", "train", *SEARCH, "hydra.sweeper.n_jobs=0", needs="n_jobs"),
    case("search-n_jobs-negative", "train", *SEARCH, "hydra.sweeper.n_jobs=-1", needs="n_jobs"),
    case("search-repeats-zero", "train", *SEARCH, "hydra.sweeper.repeats=0", needs="repeats"),
    case("search-direction-unknown", "train", *SEARCH, "hydra.sweeper.direction=sideways", needs=("sideways", "maximize")),
    case("search-directions-objectives-mismatch", "train", *SEARCH, "hydra.sweeper.direction=[maximize,minimize]",
         needs=("direction", "objective")),
    case("search-objective-unknown", "train", *SEARCH, "hydra.sweeper.objectives=[nope]", needs="nope"),
    case("search-aggregate-unknown", "train", *SEARCH, "hydra.sweeper.aggregate=median", needs=("aggregate", "iqm")),
    case("search-sampler-unknown", "train", *SEARCH, "hydra.sweeper.sampler.name=nope", needs=("sampler", "tpe")),
    case("search-pruner-unknown", "train", *SEARCH, "hydra.sweeper.pruner.name=nope", needs=("pruner", "median")),
    case("search-max_failure_rate-above-1", "train", *SEARCH, "hydra.sweeper.max_failure_rate=2", needs="max_failure_rate"),
    case("search-epoch_cap_factor-negative", "train", *SEARCH, "hydra.sweeper.epoch_cap_factor=-1", needs="epoch_cap_factor"),
    case("search-max_duration-negative", "train", *SEARCH, "hydra.sweeper.max_duration_minutes=-5", needs="max_duration_minutes"),
    case("search-reevaluate_top_k-negative", "train", *SEARCH, "hydra.sweeper.reevaluate_top_k=-1", needs="reevaluate_top_k"),
    case("search-reevaluate_repeats-zero", "train", *SEARCH, "hydra.sweeper.reevaluate_top_k=1", "hydra.sweeper.reevaluate_repeats=0",
         needs="reevaluate_repeats"),
    case("search-seed-negative", "train", *SEARCH, "hydra.sweeper.seed=-1", needs="hydra.sweeper.seed"),
    case("search-unknown-setting", "train", *SEARCH, "hydra.sweeper.n_trails=4", needs="n_trails"),
    case("search-storage-unknown-scheme", "train", *SEARCH, "hydra.sweeper.storage=nope://x", needs="storage"),
    case("search-custom-space-missing", "train", *SEARCH, "hydra.sweeper.custom_search_space=nowhere.space", needs="nowhere.space"),
    case("search-inverted-interval", "train", *SEARCH, "algorithm.learning_rate=interval(0.1,0.001)", needs="algorithm.learning_rate"),
    case("search-inverted-int-interval", "train", *SEARCH, "algorithm.batch_size=int(interval(256,64))", needs="algorithm.batch_size"),
    case("search-log-interval-from-zero", "train", *SEARCH, "algorithm.learning_rate=tag(log,interval(0,0.01))",
         needs="algorithm.learning_rate"),
    case("search-empty-choice", "train", *SEARCH, "algorithm.gamma=choice()", needs="algorithm.gamma"),
    case("search-empty-range", "train", *SEARCH, "algorithm.batch_size=range(64,64)", needs="algorithm.batch_size"),
    case("search-unknown-searched-key", "train", *SEARCH, "algorithm.gama=choice(0.9,0.99)", needs="algorithm.gama"),
    case("search-unknown-preset-param", "train", *SEARCH, "+hydra.sweeper.params.nope.key=choice(1,2)", needs="nope.key"),
    case("search-searched-value-out-of-range", "train", *SEARCH, "algorithm.gamma=choice(0.9,1.5)", needs="algorithm.gamma"),
    case("search-bad-base-value", "train", *SEARCH, "trainer.n_epochs=0", needs="trainer.n_epochs"),
    case("search-no-parameters", "train", *SEARCH, "hydra.sweeper.params=null", needs="params"),
    case("search-sweep-dir-read-only", "train", *SEARCH, "hydra.sweep.dir={ro}/search", needs="hydra.sweep.dir"),
    # -- evaluate --------------------------------------------------------------------------------------
    case("evaluate-nothing", "evaluate", needs="nothing to evaluate"),
    case("evaluate-missing-run", "evaluate", "/nowhere/run", needs="/nowhere/run"),
    case("evaluate-not-a-run", "evaluate", "{notrun}", needs="run directory"),
    case("evaluate-a-text-file", "evaluate", "{file}", needs="file.txt"),
    case("evaluate-episodes-zero", "evaluate", "{trained}", "--episodes", "0", needs="--episodes"),
    case("evaluate-episodes-negative", "evaluate", "{trained}", "--episodes", "-3", needs="--episodes"),
    case("evaluate-episodes-word", "evaluate", "{trained}", "--episodes", "many", needs="--episodes"),
    case("evaluate-video-negative", "evaluate", "{trained}", "--video", "-1", needs="--video"),
    case("evaluate-video-above-episodes", "evaluate", "{trained}", "--episodes", "2", "--video", "5", needs="--video"),
    case("evaluate-seed-negative", "evaluate", "{trained}", "--seed", "-1", needs="--seed"),
    case("evaluate-checkpoint-unknown", "evaluate", "{trained}", "--checkpoint", "worst", needs=("--checkpoint", "best")),
    case("evaluate-unknown-option", "evaluate", "{trained}", "--frames", "3", needs="--frames"),
    case("evaluate-controller-unknown-env", "evaluate", "--controller", "Nope/random", needs=("Nope", "CartPole")),
    case("evaluate-controller-unknown-algorithm", "evaluate", "--controller", "CartPole/nope", needs=("nope", "random")),
    case("evaluate-controller-no-algorithm", "evaluate", "--controller", "CartPole", needs="<Env>/<algo>"),
    case("evaluate-controller-learner", "evaluate", "--controller", "CartPole/sac", needs="sac"),
    case("evaluate-controller-bad-override", "evaluate", "--controller", "CartPole/random env.n_envs=0", needs="env.n_envs"),
    case("evaluate-out-read-only", "evaluate", "--controller", "CartPole/random", "--episodes", "1", "--out", "{ro}/out", needs="--out"),
    case("evaluate-out-under-a-file", "evaluate", "--controller", "CartPole/random", "--episodes", "1", "--out", "{file}/out",
         needs="--out"),
    # -- plot ------------------------------------------------------------------------------------------
    case("plot-no-store", "plot", "--tracking-uri", "sqlite:///{tmp}/none.db", needs="none.db"),
    case("plot-file-store-missing", "plot", "--tracking-uri", "file:///nowhere/mlruns", needs="/nowhere/mlruns"),
    case("plot-unknown-experiment", "plot", "--experiment", "Nope", needs=("Nope", "Pendulum")),
    case("plot-unknown-env", "plot", "--env", "Nope", needs=("Nope", "Pendulum")),
    case("plot-unknown-algorithm", "plot", "--algorithm", "nope", needs=("nope", "sac")),
    case("plot-unknown-metric", "plot", "--metric", "eval/nope", needs=("eval/nope", "eval/mean_reward")),
    case("plot-unknown-aggregate", "plot", "--agg", "median", needs=("--agg", "iqm")),
    case("plot-n-boot-zero", "plot", "--n-boot", "0", needs="--n-boot"),
    case("plot-min-runs-zero", "plot", "--min-runs", "0", needs="--min-runs"),
    case("plot-min-runs-above-runs", "plot", "--min-runs", "5", needs="5"),
    case("plot-unknown-status", "plot", "--status", "DONE", needs=("DONE", "FINISHED")),
    case("plot-tag-without-value", "plot", "--tag", "seed", needs="--tag"),
    case("plot-unknown-run-id", "plot", "--run-id", "0123456789abcdef0123456789abcdef", needs="--run-id"),
    case("plot-unknown-group-by", "plot", "--group-by", "nope", needs="--group-by"),
    case("plot-seed-negative", "plot", "--seed", "-1", needs="--seed"),
    case("plot-n-boot-word", "plot", "--n-boot", "many", needs="--n-boot"),
    case("plot-out-read-only", "plot", "--out", "{ro}/out", needs="--out"),
    case("plot-out-under-a-file", "plot", "--out", "{file}/out", needs="--out"),
    # -- plot_gait -------------------------------------------------------------------------------------
    case("gait-seed-negative", "plot_gait", "--seed", "-1", needs="--seed"),
    case("gait-steps-zero", "plot_gait", "--steps", "0", needs="--steps"),
    case("gait-missing-run", "plot_gait", "/nowhere/run", needs="/nowhere/run"),
    case("gait-not-a-run", "plot_gait", "{notrun}", needs="notrun"),
    case("gait-not-cassie", "plot_gait", "{trained}", needs=("Cassie", "Pendulum")),
    case("gait-checkpoint-unknown", "plot_gait", "--checkpoint", "worst", needs=("--checkpoint", "best")),
    case("gait-render-unknown", "plot_gait", "render=video", needs=("render", "render=record")),
    case("gait-unknown-env", "plot_gait", "--env", "Nope", needs=("Nope", "Cassie")),
    case("gait-env-not-cassie", "plot_gait", "--env", "Pendulum", needs="Cassie"),
    case("gait-speed-word", "plot_gait", "--speed", "fast", needs="--speed"),
    case("gait-out-read-only", "plot_gait", "--steps", "5", "--out", "{ro}/out", needs="--out"),
    # -- ./run_testing.sh ------------------------------------------------------------------------------
    case("matrix-processes-zero", "run_testing", "-t", "function", "-p", "0", needs="-p"),
    case("matrix-processes-negative", "run_testing", "-t", "function", "-p", "-2", needs="-p"),
    case("matrix-spacing-negative", "run_testing", "-t", "function", "-s", "-1", needs="-s"),
    case("matrix-min-memory-negative", "run_testing", "-t", "function", "-m", "-5", needs="-m"),
    case("matrix-unknown-tier", "run_testing", "-t", "smoke", needs=("smoke", "function")),
    case("matrix-processes-word", "run_testing", "-t", "function", "-p", "many", needs="-p"),
    case("matrix-bad-gpus", "run_testing", "-t", "function", "-g", "none", needs="-g"),
    case("matrix-out-read-only", "run_testing", "-t", "function", "-o", "{ro}/out", needs="-o"),
    case("matrix-out-under-a-file", "run_testing", "-t", "function", "-o", "{file}/out", needs="-o"),
    case("matrix-filter-matches-nothing", "run_testing", "-t", "function", "-f", "NoSuchPair", needs="NoSuchPair"),
    case("matrix-performance-filter-matches-nothing", "run_testing", "-t", "performance", "-f", "NoSuchPair", needs="NoSuchPair"),
    case("matrix-bars-dir-missing", "run_testing", "-t", "performance", "-b", "/nowhere/bars", needs="/nowhere/bars"),
    case("matrix-unknown-option", "run_testing", "-x", needs="-x"),
    # -- the PenguinPi simulator -----------------------------------------------------------------------
    case("sim-parent-zero", "sim_server", "--parent", "0", needs="--parent"),
    case("sim-port-negative", "sim_server", "--port", "-1", needs="--port"),
    case("sim-port-too-large", "sim_server", "--port", "70000", needs="--port"),
    case("sim-port-word", "sim_server", "--port", "http", needs="--port"),
    case("sim-port-busy", "sim_server", "--port", "{busy_port}", needs="--port"),
    case("sim-speedup-negative", "sim_server", "--port", "0", "--speedup", "-1", needs="--speedup"),
    case("sim-speedup-nan", "sim_server", "--port", "0", "--speedup", "nan", needs="--speedup"),
    case("sim-seed-negative", "sim_server", "--port", "0", "--seed", "-1", needs="--seed"),
    case("sim-host-not-here", "sim_server", "--port", "0", "--host", "203.0.113.5", needs="--host"),
    case("sim-unknown-option", "sim_server", "--prot", "0", needs="--prot"),
]

TINY_TRAINER = {"trainer.n_epochs": "1", "trainer.eval_after_n_steps": "100", "trainer.n_test_rollouts": "1",
                "trainer.progress_bar": "false", "seed": "0"}
TINY_SEARCH = {"hydra.sweeper.n_trials": "2", "hydra.sweeper.n_jobs": "1"}
OUT_OPTION = {"evaluate": "--out", "plot": "--out", "plot_gait": "--out", "run_testing": "-o"}


PLACEHOLDER = re.compile(r"\{(tmp|run|sweep|out|ro|file|notrun|trained|corrupt|store|busy_port)\}")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def full_args(c: Case) -> list[str]:
    """The case's arguments with the defaults of its command (see the module docstring)."""
    args = list(c.args)
    if c.command == "train":
        given = {_key(a) for a in args if not a.startswith("-")}
        extra = {"hydra.run.dir": "{run}", "hydra.sweep.dir": "{sweep}", **TINY_TRAINER}
        if "+search" not in given and "trainer.resume" not in given:
            extra = {"env": "Pendulum", "algorithm": "sac", **extra}
        if "+search" in given:
            extra.update(TINY_SEARCH)
        if "trainer.resume" in given:  # a resumed run's directory is its own
            extra = {k: v for k, v in extra.items() if k != "hydra.run.dir"}
        args += [f"{k}={v}" for k, v in extra.items() if k not in given]
    elif c.command in OUT_OPTION and OUT_OPTION[c.command] not in args:
        args += [OUT_OPTION[c.command], "{out}"]
    return args


# -- fixtures ------------------------------------------------------------------------------------------

def case_env(store_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMET_API", "HYDRARL_", "MLFLOW_TRACKING", "PYTEST_", "CUDA_VISIBLE"))}
    env.update(MLFLOW_TRACKING_URI=store_uri, CUDA_VISIBLE_DEVICES="", COMET_AUTO_LOG_ENV_DETAILS="false",
               COMET_ERROR_TRACKING_ENABLE="false", MLFLOW_DISABLE_TELEMETRY="true", SDL_VIDEODRIVER="dummy")
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("MENAGERIE_ROOT", str(PROJECT_ROOT.parent / "shared" / "menagerie"))
    return env


@pytest.fixture(scope="module")
def runner():
    r = ForkRunner()
    yield r
    r.close()


SETUP_TRAIN = ["env=Pendulum", "algorithm=sac", "seed=1", "trainer.n_epochs=2", "trainer.eval_after_n_steps=100",
               "trainer.n_test_rollouts=1", "trainer.progress_bar=false", "logger=[mlflow]", "algorithm.learning_starts=50",
               "algorithm.batch_size=32", "algorithm.buffer_size=2000", "algorithm.policy_kwargs.net_arch=[16]"]


@pytest.fixture(scope="module")
def trained(runner, tmp_path_factory) -> Path:
    """A real trained Pendulum/sac run (``run/``) and the MLflow store holding it (``mlflow.db``), made once
    for all test processes (the first to get the lock trains; the others wait and reuse it)."""
    shared = tmp_path_factory.getbasetemp().parent / "faults-trained"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "ready").exists():
            shutil.rmtree(shared / "run", ignore_errors=True)
            env = case_env(f"sqlite:///{shared}/mlflow.db")
            reply = runner.run("train", [*SETUP_TRAIN, f"hydra.run.dir={shared / 'run'}"], shared, env, timeout=300)
            assert reply["status"] == 0, reply["stderr"][-3000:]
            (shared / "ready").write_text("")
    return shared


def _runs_in(db: Path) -> int:
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:  # not an MLflow store (e.g. an Optuna storage)
            return 0


def _studies_in(db: Path) -> int:
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from studies").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _entries(base: Path) -> set[str]:
    """Entries up to three levels under ``base``."""
    return {str(p.relative_to(base)) for depth in ("*", "*/*", "*/*/*") for p in base.glob(depth)} if base.exists() else set()


# -- the test ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_error_line_and_records_nothing(c: Case, runner: ForkRunner, trained: Path, tmp_path: Path):
    tmp = tmp_path
    (tmp / "file.txt").write_text("not a run, not a model\n")
    (tmp / "notrun").mkdir()
    shutil.copytree(trained / "run", tmp / "trained")
    shutil.copy(trained / "mlflow.db", tmp / "mlflow.db")
    store = f"sqlite:///{tmp}/mlflow.db"
    with ExitStack() as stack:
        busy = stack.enter_context(socket.socket())
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        places = {"tmp": str(tmp), "run": str(tmp / "run"), "sweep": str(tmp / "sweep"), "out": str(tmp / "out"),
                  "ro": str(tmp / "ro"), "file": str(tmp / "file.txt"), "notrun": str(tmp / "notrun"),
                  "trained": str(tmp / "trained"), "store": store, "busy_port": str(busy.getsockname()[1])}
        places["corrupt"] = str(tmp / "corrupt")
        if any("{corrupt}" in a for a in full_args(c)):  # the trained run with its only resumable model truncated
            shutil.copytree(trained / "run", tmp / "corrupt")
            model = tmp / "corrupt" / "checkpoints" / "last" / "model.zip"
            model.write_bytes(model.read_bytes()[:1000])
        args = [PLACEHOLDER.sub(lambda m: places[m.group(1)], a) for a in full_args(c)]
        if any("{ro}" in a for a in full_args(c)):
            stack.enter_context(readonly_dir(tmp / "ro"))
        trained_before = _listing(tmp / "trained")
        runs_before, project_before = _runs_in(tmp / "mlflow.db"), _entries(PROJECT_ROOT / "runs")
        private_runs = None
        if IS_ROOT:  # what the case writes into <project>/runs lands in a folder of its own
            private_runs = tmp / "project_runs"
            private_runs.mkdir()
        reply = runner.run(c.command, args, tmp, case_env(store), timeout=c.timeout, private_runs=private_runs)
    shown = f"{c.command} {' '.join(args)}\n--- exit {reply['status']} after {reply['seconds']} s\n--- stderr:\n{reply['stderr'][-4000:]}" \
            f"\n--- stdout:\n{reply['stdout'][-2000:]}"
    assert not reply["timed_out"], f"hang: still running after {c.timeout:g} s\n{shown}"
    assert not reply["leftovers"], f"processes left running: {reply['leftovers']}\n{shown}"
    assert "Traceback" not in reply["stderr"] + reply["stdout"], f"traceback\n{shown}"
    assert reply["status"] == 2, f"exit status {reply['status']}, not 2\n{shown}"
    lines = [line for line in reply["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr is not exactly one 'error: ' line\n{shown}"
    for needle in c.needles:
        assert needle in lines[0], f"the message does not name {needle!r}\n{shown}"
    # Nothing recorded.
    left = [name for name in ("run", "sweep", "out", "ro/run", "ro/grid", "ro/search", "ro/out") if (tmp / name).exists()]
    assert not left, f"recorded: {left} created\n{shown}"
    assert _listing(tmp / "trained") == trained_before, f"recorded: the resumed/read run {tmp / 'trained'} changed\n{shown}"
    for db in tmp.glob("*.db"):
        before = runs_before if db.name == "mlflow.db" else 0
        assert _runs_in(db) == before, f"recorded: {db.name} holds {_runs_in(db) - before} new MLflow run(s)\n{shown}"
        assert _studies_in(db) == 0, f"recorded: {db.name} holds an Optuna study\n{shown}"
    new = sorted(_entries(private_runs)) if private_runs else sorted(_entries(PROJECT_ROOT / "runs") - project_before)
    assert not new, f"recorded in the project's runs/: {new}\n{shown}"


def test_the_table_is_the_campaign():
    """At least 100 cases, unique ids, every entry point covered."""
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.command for c in CASES} == {"train", "evaluate", "plot", "plot_gait", "run_testing", "sim_server"}
    assert json.dumps([c._asdict() for c in CASES])  # plain data: benchmarks/fault_campaign.py lists it
