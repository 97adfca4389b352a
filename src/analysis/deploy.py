"""``experiment/deploy.py``: drive the PenguinPi (or its simulator) with a saved model, and record the drive in MLflow.

    python experiment/deploy.py                                    # the newest PenguinPi run under runs/, one episode, simulator
    python experiment/deploy.py runs/PenguinPi/lane/<run> episodes=3
    python experiment/deploy.py path/to/model.zip env.kwargs.robot_url=http://192.168.50.1:8080 episodes=0   # until Ctrl-C

MODEL, the optional first argument, is a run directory (its ``checkpoints/best/model.zip``) or a model.zip inside one;
without it, the run under ``./runs`` whose best model file is newest among the PenguinPi runs. The model is loaded
with its run's settings (class, normalisation statistics) and drives in its run's env config, changed by
``env.<key>=...`` overrides (e.g. ``env.kwargs.robot_url``, ``env.kwargs.sim_speedup``, ``env.max_episode_steps``).
Other keys: ``episodes`` (default 1; 0: until Ctrl-C), ``seed`` (default 0), ``stochastic`` (default false: the
deterministic policy) and ``tracking_uri`` (default ``sqlite:///mlflow.db``). Bad input is one ``error:`` line and
exit 2, before anything is recorded or the robot moves.

Each episode prints one line: steps, odometry distance (m), time on the road (steps x the env's step time, s; the
step that left the road counts) and how it ended, and the return. The drive is one MLflow run in experiment
``deploy-PenguinPi`` with each episode's ``distance``, ``time_on_road``, ``return`` and ``steps`` at step = episode
number (1, 2, ...), and the files of ``runs/deploy/<date>_<time>/``: ``poses.csv`` (the odometry pose after each step;
step 0: the reset's) and ``path.png`` (the odometry paths, one line per episode).

Safety: the env sends ``/robot/stop`` whenever a step raises and when it is closed, which happens here in a
``finally``. Ctrl-C (even where this process was started with SIGINT ignored) ends the drive: what was driven is
recorded, the run ends KILLED and the exit status is 130. A failed robot request ends it FAILED with the cause,
one ``error:`` line and exit status 1.
"""

from __future__ import annotations

import contextlib
import csv
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hydrarl.analysis.evaluate_agents import Agent
from hydrarl.envs.penguinpi.client import RobotError
from hydrarl.errors import UserError, exit_on_user_error
from hydrarl.status import Status

ENV_ID = "PenguinPi-v0"
EXPERIMENT = "deploy-PenguinPi"
SETTINGS = "MODEL (first), episodes, seed, stochastic, tracking_uri, env.<key>"
INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT)
FAILED_REQUEST = 1  # exit status after a failed robot request


@dataclass
class Options:
    model: str | None = None        # run directory or model.zip; None: the newest PenguinPi run under ./runs
    episodes: int = 1               # 0: until Ctrl-C
    seed: int = 0
    stochastic: bool = False
    tracking_uri: str = "sqlite:///mlflow.db"
    overrides: list[str] = field(default_factory=list)  # env.<key>=<value>


@dataclass
class Episode:
    """One driven episode: its length, the odometry distance (m), the return, and the poses (x m, y m, θ rad)."""

    number: int
    steps: int = 0
    distance: float = 0.0
    reward: float = 0.0
    end: str = "in progress"        # then "time limit", "left the road", or "stopped by Ctrl-C" (or by a failed request)
    poses: list[tuple[float, float, float]] = field(default_factory=list)


def parse(argv: list[str]) -> Options:
    """The command line -> Options; a UserError naming a bad argument and what is allowed."""
    options = Options()
    if argv and "=" not in argv[0]:
        options.model, argv = argv[0], argv[1:]
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq:
            raise UserError(f"{arg!r}: after MODEL, give key=value arguments ({SETTINGS}).")
        if key.startswith("env."):
            options.overrides.append(arg)
        elif key in ("episodes", "seed"):
            if not value.isdigit():
                raise UserError(f"{key}={value}: give an integer >= 0{' (0: until Ctrl-C)' if key == 'episodes' else ''}.")
            setattr(options, key, int(value))
        elif key == "stochastic":
            if value not in ("true", "false"):
                raise UserError(f"stochastic={value}: give true or false.")
            options.stochastic = value == "true"
        elif key == "tracking_uri":
            if not value.strip():
                raise UserError("tracking_uri=: give an MLflow store, e.g. sqlite:///mlflow.db.")
            options.tracking_uri = value
        else:
            raise UserError(f"{key} is not a setting of deploy.py; its settings: {SETTINGS}.")
    return options


def _is_penguinpi(cfg: DictConfig) -> bool:
    return str(cfg.env.get("id", "")).split(":")[-1] == ENV_ID


def newest_run(root: Path = Path("runs")) -> Path:
    """The run directory under ``root`` whose ``checkpoints/best/model.zip`` was written last among the runs whose
    config.yaml has the PenguinPi env; a UserError when there is none."""
    from hydrarl.config.runs import MODEL, load_run_config

    found = []
    for model in root.glob(f"**/checkpoints/best/{MODEL}"):
        try:
            found.append((model.stat().st_mtime, model.parents[2]))
        except OSError:  # removed meanwhile
            continue
    for _, run_dir in sorted(found, reverse=True):
        try:
            if (run_dir / "config.yaml").is_file() and _is_penguinpi(load_run_config(run_dir)):
                return run_dir
        except UserError:  # not a hydrarl run's config: not a candidate
            continue
    raise UserError(f"no saved PenguinPi model under {root.absolute()} (a run directory with config.yaml and "
                    f"checkpoints/best/{MODEL}); give MODEL (a run directory or a model.zip), or train one: "
                    "python experiment/train.py env=PenguinPi algorithm=<algorithm>.")


def with_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """A copy of a run's config with ``env.<key>=<value>`` overrides (Hydra's value syntax) applied and checked; a
    UserError for a key its env config lacks or a value it does not allow."""
    from hydrarl.config.compose import parse_overrides
    from hydrarl.config.validate import validate

    cfg = cfg.copy()
    missing = object()
    for override in parse_overrides(overrides):
        key = override.key_or_group
        if OmegaConf.select(cfg, key, default=missing) is missing:
            parent = key.rpartition(".")[0]
            node = OmegaConf.select(cfg, parent, default=None)
            keys = ", ".join(str(k) for k in node.keys()) if isinstance(node, DictConfig) else ""
            raise UserError(f"{key} is not a key of this run's env config" + (f"; keys under {parent}: {keys}." if keys else "."))
        value = override.value()
        if isinstance(OmegaConf.select(cfg, key), DictConfig) and not isinstance(value, dict):
            raise UserError(f"{key} is a group of keys ({', '.join(str(k) for k in OmegaConf.select(cfg, key).keys())}): "
                            f"set one of them, {key}.<key>=<value>.")
        OmegaConf.update(cfg, key, value, merge=True)
    cfg.env.vec_env = "dummy"  # one env in this process: Ctrl-C and the stop request reach it directly
    from hydrarl.envs.penguinpi.env import check_kwargs

    try:
        validate(cfg)
        check_kwargs(**OmegaConf.to_container(cfg.env.kwargs, resolve=True))
    except UserError:
        raise
    except Exception as exc:  # a value of a type the config cannot take
        raise UserError(f"the env overrides {' '.join(overrides)} do not apply: {exc}") from exc
    return cfg


def deploy_agent(options: Options) -> Agent:
    """The saved model to drive (MODEL, or the newest PenguinPi run), in its run's env with the overrides; a UserError
    for a model that is not a PenguinPi one."""
    from hydrarl.analysis.evaluate_agents import agent_from_path
    from hydrarl.config.runs import find_model

    path = options.model if options.model is not None else newest_run()
    run_dir, model_path, cfg = find_model(path)
    if not _is_penguinpi(cfg):
        raise UserError(f"{path}: a model of env {cfg.env.get('id')} ({run_dir / 'config.yaml'}); deploy.py drives the "
                        "PenguinPi: give a PenguinPi run (trained with env=PenguinPi) or its model.zip.")
    cfg = with_overrides(cfg, options.overrides)
    agent = agent_from_path(model_path)
    agent.env_cfg = cfg.env
    return agent


class Recorder:
    """The drive's MLflow run (experiment ``deploy-PenguinPi``) and its folder ``runs/deploy/<date>_<time>``."""

    def __init__(self, agent: Agent, options: Options, robot: str):
        """Open the run: a UserError, with nothing left behind, when the store cannot be opened."""
        from hydrarl.errors import writable_dir
        from hydrarl.locks import DirLock
        from hydrarl.paths import claim_new_dir
        from hydrarl.runinfo import flatten, run_tags
        from hydrarl.trackers.base import RunRecord
        from hydrarl.trackers.mlflow_tracker import MlflowTracker

        self.out = writable_dir(claim_new_dir(Path("runs") / "deploy"), "runs/deploy")
        self.lock = DirLock(self.out, "deploy folder").acquire()  # a live drive's run is never closed as stale
        params = {"model": str(Path(agent.source).absolute()), "episodes": options.episodes, "seed": options.seed, "stochastic": options.stochastic,
                  **flatten(OmegaConf.to_container(agent.env_cfg, resolve=True), "env.")}
        tags = run_tags({"hydrarl.model": str(Path(agent.source).absolute()), "hydrarl.robot": robot,
                         "run_dir": str(self.out.absolute())})
        self.tracker = MlflowTracker(options.tracking_uri, EXPERIMENT, run_name=f"{agent.label} deploy")
        try:
            self.tracker.start(RunRecord(self.out, agent.label, params, tags))
        except BaseException as exc:
            self.lock.release()
            (self.out / ".lock").unlink(missing_ok=True)
            for folder in (self.out, *self.out.parents[:2]):  # its folder, and runs/deploy and runs if now empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if isinstance(exc, UserError):  # the tracker names its training key; here the setting is tracking_uri
                raise UserError(str(exc).replace("logger.mlflow.tracking_uri", "tracking_uri", 1)) from exc
            raise

    def log_episode(self, episode: Episode, step_time: float) -> None:
        """The episode's metrics at step = its number: distance (m), time_on_road (s), return, steps."""
        self.tracker.log_metrics({"distance": episode.distance, "time_on_road": episode.steps * step_time,
                                  "return": episode.reward, "steps": episode.steps}, step=episode.number)

    def finish(self, episodes: list[Episode], status: Status, cause: str | None, title: str) -> None:
        """Write poses.csv and path.png, keep them with the run, and end it as ``status`` (with ``cause``)."""
        try:
            if episodes:
                for path in (write_poses(episodes, self.out / "poses.csv"), plot_paths(episodes, self.out / "path.png", title)):
                    self.tracker.log_artifact(path)
            if cause is not None:
                self.tracker.record_error(cause)
        finally:
            self.tracker.finish(status)
            self.lock.release()


def write_poses(episodes: list[Episode], path: Path) -> Path:
    """``episode, step, x_m, y_m, theta_rad``: the odometry pose after each step (step 0: after the reset)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "step", "x_m", "y_m", "theta_rad"])
        for episode in episodes:
            writer.writerows([episode.number, step, *pose] for step, pose in enumerate(episode.poses))
    return path


def plot_paths(episodes: list[Episode], path: Path, title: str) -> Path:
    """The odometry path (x, y in m) of each episode, one line each, as a PNG."""
    from hydrarl.analysis.output import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(5, 4.2), dpi=90, layout="constrained")
    for episode in episodes:
        xy = np.asarray(episode.poses)[:, :2]
        ax.plot(xy[:, 0], xy[:, 1], lw=1.2, label=f"episode {episode.number}: {episode.distance:.2f} m, {episode.end}")
    ax.plot(0, 0, "ko", ms=4, label="start (odometry origin)")
    ax.set(xlabel="x (m)", ylabel="y (m)")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")  # metres alike on both axes; a straight drive is not flattened
    ax.grid(alpha=0.3)
    if len(episodes) <= 8:
        ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def _line(episode: Episode, total: int, step_time: float) -> str:
    of = f"/{total}" if total else ""
    return (f"episode {episode.number}{of}: {episode.steps} steps, {episode.distance:.2f} m, "
            f"{episode.steps * step_time:.1f} s on the road ({episode.end}), return {episode.reward:.2f}")


def drive(agent: Agent, options: Options) -> int:
    """Drive ``options.episodes`` episodes (0: until Ctrl-C) and record them; the exit status (0, 1, or 130)."""
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecNormalize

    from hydrarl.analysis.evaluate_agents import make_eval_env

    robot = agent.env_cfg.kwargs.get("robot_url") or "simulator"
    step_time = float(agent.env_cfg.kwargs.get("step_time", 0.2))  # s per step
    env = recorder = error = None
    episodes: list[Episode] = []
    status, cause = Status.COMPLETED, None
    try:
        setup_failure = None
        try:
            set_random_seed(options.seed)
            env = make_eval_env(agent, options.seed)
            model = agent.make_model(env, options.seed)
            model.set_random_seed(options.seed)
            step_time = float(env.get_attr("step_time")[0])
        except RobotError as exc:  # the robot is unreachable before the drive: recorded as a failed drive
            setup_failure = exc
        recorder = Recorder(agent, options, robot)
        if setup_failure is not None:
            raise setup_failure
        how = "stochastic" if options.stochastic else "deterministic"
        print(f"driving {agent.label} ({agent.source}, {how}) on {'the simulator' if robot == 'simulator' else robot}: "
              f"{options.episodes or 'episodes until Ctrl-C'}{' episode(s)' if options.episodes else ''}; "
              f"run {recorder.tracker.run_id} in {EXPERIMENT}", flush=True)
        env.seed(options.seed)
        obs, state, start = env.reset(), None, np.ones(1, bool)
        while not options.episodes or len(episodes) < options.episodes:
            episode = Episode(len(episodes) + 1, poses=[tuple(env.reset_infos[0]["pose"])])
            episodes.append(episode)
            done = np.zeros(1, bool)
            while not done[0]:
                action, state = model.predict(obs, state, start, deterministic=not options.stochastic)
                obs, reward, done, infos = env.step(action)
                start = done
                info = infos[0]
                episode.steps += 1
                episode.reward += float(env.get_original_reward()[0] if isinstance(env, VecNormalize) else reward[0])
                episode.distance = float(info.get("episode_metrics", {}).get("distance", episode.distance))
                episode.poses.append(tuple(info["pose"]))
            episode.end = "time limit" if info.get("TimeLimit.truncated") else "left the road"
            print(_line(episode, options.episodes, step_time), flush=True)
            recorder.log_episode(episode, step_time)
    except KeyboardInterrupt:
        status = Status.KILLED
        _stopped(episodes, "stopped by Ctrl-C")
    except RobotError as exc:
        status, cause = Status.FAILED, str(exc)
        _stopped(episodes, "stopped: a request failed")
    except BaseException as exc:  # recorded as FAILED (once the run is open), then raised on
        status, cause, error = Status.FAILED, f"{type(exc).__name__}: {exc}", exc
        _stopped(episodes, "stopped by an error")
    finally:
        if env is not None:
            env.close()  # stops the robot (and an owned simulator) before anything else
    if recorder is None:
        if error is not None:  # bad input found while setting up (a model that does not load, a store that does not open)
            raise error
        print("stopped before the drive began; nothing recorded", file=sys.stderr)
        return INTERRUPTED
    _end(recorder, episodes, status, cause, f"{agent.label}: odometry paths ({status.mlflow})", options.episodes, step_time)
    if error is not None:
        raise error
    if status == Status.FAILED:
        print(f"error: {cause}", file=sys.stderr)
    return {Status.KILLED: INTERRUPTED, Status.FAILED: FAILED_REQUEST}.get(status, 0)


def _stopped(episodes: list[Episode], why: str) -> None:
    """Mark the episode in progress (if any) as ended by ``why``."""
    if episodes and episodes[-1].end == "in progress":
        episodes[-1].end = why


def _end(recorder: Recorder, episodes: list[Episode], status: Status, cause: str | None, title: str, total: int,
         step_time: float) -> None:
    """Record the drive as ended with ``status`` (the episode in progress too: what was driven of it counts) and print
    the summary line. ``step_time``: s per step."""
    driven = [e for e in episodes if e.steps]
    if driven and driven[-1].end.startswith("stopped"):
        print(_line(driven[-1], total, step_time), flush=True)
        recorder.log_episode(driven[-1], step_time)
    recorder.finish(driven, status, cause, title)
    steps = sum(e.steps for e in driven)
    left = sum(e.end == "left the road" for e in driven)
    what = (f"{len(driven)} episode(s), {steps} steps: {sum(e.distance for e in driven):.2f} m driven, "
            f"{steps * step_time:.1f} s on the road, {left} left the road, mean return {np.mean([e.reward for e in driven]):.2f}"
            if driven else "nothing driven")
    print(f"{what}; run {recorder.tracker.run_id} {status.mlflow} in {EXPERIMENT} ({recorder.tracker.tracking_uri}), "
          f"files in {recorder.out}", flush=True)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``experiment/deploy.py``: exit 0; 130 after Ctrl-C; 1 after a failed robot request; 2 with one
    ``error:`` line on bad input (nothing recorded)."""
    options = parse(sys.argv[1:] if argv is None else argv)
    agent = deploy_agent(options)
    # Ctrl-C ends the drive even where this process was started with SIGINT ignored (a script's background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return drive(agent, options)
    except KeyboardInterrupt:  # a second Ctrl-C, while the drive was being recorded (the robot is stopped by then)
        print("stopped by Ctrl-C while the drive was being recorded: its record may be incomplete", file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
