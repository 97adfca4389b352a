"""``experiment/collect.py``: record episodes into an offline dataset (Minari format, ``hydrarl.datasets``).

    python experiment/collect.py env=PenguinPi collector=scripted episodes=50 dataset=runs/datasets/loop
    python experiment/collect.py env=PenguinPi collector=policy model=runs/PenguinPi/ppo/<run> episodes=10 dataset=...

Collectors: ``scripted`` drives with the env's scripted controller (PenguinPi: ``algorithm=lane``) with action noise
``noise`` (default 0.1), so datasets of known quality are made without a person; ``policy`` drives with a saved
model (a run directory or a model.zip; its best checkpoint), deterministic unless ``stochastic=true``, with
Gaussian action noise of std ``noise`` times half the action range when ``noise`` is given (Box actions); ``teleop``
(PenguinPi) drives with the keys of the terminal (``hydrarl.analysis.teleop``; the users' wheel commands as the
env's continuous actions, the simulator in real time). Keys
``env.<key>=...`` and ``algorithm.<key>=...`` go to the env's and the controller's configs (e.g.
``env.kwargs.robot_url=http://192.168.50.1:8080``). By default the episodes are appended to the dataset (ids go
on); ``one_shot=true`` starts it afresh. Each finished episode is written at once, as one atomic append: Ctrl-C
(which also stops the robot) keeps every episode finished before it. Observations are the env's (for PenguinPi the
camera crop and, with ``env.kwargs.include_encoders=true``, the wheel ticks); ``infos`` keep the robot's odometry
pose (x, y, θ) and the road share of each step when the env reports them.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hydrarl.errors import UserError, exit_on_user_error

log = logging.getLogger("hydrarl")

SCRIPTED = {"PenguinPi": "lane"}  # collector=scripted: the env's scripted controller
SCRIPTED_NOISE = 0.1  # collector=scripted without noise=: the std of its action noise
INFO_KEYS = ("pose", "track_share")  # per-step infos kept in the dataset when the env gives them


@dataclass
class Options:
    env: str = "PenguinPi"
    collector: str = "scripted"
    episodes: int = 10
    dataset: Path = Path("runs/datasets/loop")
    one_shot: bool = False
    seed: int = 0
    noise: float | None = None  # not given: SCRIPTED_NOISE for collector=scripted, none for collector=policy
    model: str | None = None
    stochastic: bool = False
    overrides: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> Options:
    """``key=value`` arguments -> Options; a UserError naming a bad one and what is allowed."""
    options, allowed = Options(), "env, collector, episodes, dataset, one_shot, seed, noise, model, stochastic, env.<key>, algorithm.<key>"
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq:
            raise UserError(f"{arg!r}: give key=value arguments ({allowed}).")
        if key.startswith(("env.", "algorithm.")):
            options.overrides.append(arg)
        elif key in ("env", "dataset", "model"):
            setattr(options, key, Path(value) if key == "dataset" else value)
        elif key == "collector":
            if value not in ("scripted", "policy", "teleop"):
                raise UserError(f"collector={value} is unknown: scripted (the env's scripted controller, with noise), "
                                "policy (a saved model: model=<run dir or model.zip>) or teleop (keys in this terminal).")
            options.collector = value
        elif key in ("episodes", "seed"):
            if not value.isdigit() or (key == "episodes" and int(value) < 1):
                raise UserError(f"{key}={value}: give an integer >= {1 if key == 'episodes' else 0}.")
            setattr(options, key, int(value))
        elif key == "noise":
            options.noise = _unit_number(value)
        elif key in ("one_shot", "stochastic"):
            if value not in ("true", "false"):
                raise UserError(f"{key}={value}: give true or false.")
            setattr(options, key, value == "true")
        else:
            raise UserError(f"{key} is not a setting of collect.py; its settings: {allowed}.")
    if options.collector == "policy" and not options.model:
        raise UserError("collector=policy needs model=<run dir or model.zip>.")
    if options.collector == "teleop" and options.noise is not None:
        raise UserError("noise applies to collector=scripted and collector=policy; teleop records the keys as pressed.")
    if options.collector == "teleop" and options.env != "PenguinPi":
        raise UserError(f"collector=teleop drives the PenguinPi with the users' key map; env={options.env} is not it.")
    if options.collector == "scripted" and options.env not in SCRIPTED:
        raise UserError(f"collector=scripted: env={options.env} has no scripted controller; envs with one: {', '.join(SCRIPTED)}. "
                        "Use collector=policy model=<a saved model> instead.")
    return options


def _unit_number(value: str) -> float:
    """``noise=<value>`` as a float in [0, 1]; a UserError otherwise."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 <= number <= 1:
        raise UserError(f"noise={value}: give a number in [0, 1] (std of the action noise, in half action ranges).")
    return number


def _agent(options: Options):
    from hydrarl.analysis.eval_env import env_choice
    from hydrarl.analysis.evaluate_agents import Agent, agent_from_controller, agent_from_path
    from hydrarl.analysis.teleop import TerminalTeleop
    from hydrarl.config.compose import compose

    if options.collector == "teleop":  # real time by default (a person drives); the keys' wheel commands
        cfg = compose([f"env={options.env}", "env.kwargs.sim_speedup=1", *options.overrides]).env
        if cfg.kwargs.actions != "continuous":
            raise UserError("collector=teleop records the keys' wheel commands as the env's continuous actions; "
                            f"env.kwargs.actions={cfg.kwargs.actions} is not allowed here.")
        keys = TerminalTeleop(cfg.kwargs.max_speed)
        return Agent("teleop", cfg, "keys of this terminal", lambda env, seed: keys)

    if options.collector == "scripted":
        return agent_from_controller(" ".join([f"{options.env}/{SCRIPTED[options.env]}", f"algorithm.noise={SCRIPTED_NOISE if options.noise is None else options.noise}",
                                               *options.overrides]))
    if options.overrides:
        raise UserError(f"collector=policy plays the model in its run's env; these overrides do not apply: {' '.join(options.overrides)}")
    return agent_from_path(options.model, env=env_choice(options.env))


def collect(options: Options) -> list[int]:
    """Record ``options.episodes`` episodes into the dataset; the ids written. Progress: a line per episode."""
    from hydrarl.analysis.evaluate_agents import make_eval_env
    from hydrarl.datasets.episodes import Episode, EpisodeDataset

    agent = _agent(options)
    dataset = EpisodeDataset(options.dataset)
    env = make_eval_env(agent, options.seed)
    written: list[int] = []
    fresh = options.one_shot
    held = contextlib.ExitStack()
    # Ctrl-C (SIGINT) ends the collection even where this process was started with it ignored (a background job
    # of a script, a test runner's worker), as it ends training (hydrarl.training.callbacks.StopFlag)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    held.callback(signal.signal, signal.SIGINT, previous)
    try:
        model = agent.make_model(env, options.seed)
        if options.collector == "teleop":
            held.enter_context(model)  # keys at once; the terminal is restored on the way out
        else:
            model.set_random_seed(options.seed)
        deterministic = options.collector == "policy" and not options.stochastic
        perturb = _action_noise(env.action_space, options.noise if options.collector == "policy" else None, options.seed)
        env.seed(options.seed)
        obs, state, start = env.reset(), None, np.ones(1, bool)
        while len(written) < options.episodes and not getattr(model, "quit", False):
            began, steps = time.time(), {"obs": [_raw(env, obs)], "actions": [], "rewards": [],
                                         "infos": [env.reset_infos[0] if env.reset_infos else {}]}
            done = np.zeros(1, bool)
            while not done[0]:
                action, state = model.predict(obs, state, start, deterministic=deterministic)
                action = perturb(action)
                obs, reward, done, infos = env.step(action)
                start = done
                steps["actions"].append(action[0])
                steps["rewards"].append(float(reward[0]))
                steps["infos"].append(infos[0])
                steps["obs"].append(_raw(env, obs, infos[0].get("terminal_observation") if done[0] else None))
            truncated = bool(infos[0].get("TimeLimit.truncated", False))
            n = len(steps["actions"])
            episode = Episode(_stack(steps["obs"]), np.asarray(steps["actions"]), np.asarray(steps["rewards"]),
                              np.eye(1, n, n - 1, dtype=bool)[0] & (not truncated), np.eye(1, n, n - 1, dtype=bool)[0] & truncated,
                              {key: np.asarray([i.get(key, np.nan) for i in steps["infos"]], dtype=np.float64).reshape(n + 1, -1)
                               for key in INFO_KEYS if key in steps["infos"][-1]})  # (steps + 1, k): Minari reads 1-D infos back wrong
            written += dataset.append([episode], env.observation_space, env.action_space, fresh=fresh)
            fresh = False
            distance = infos[0].get("episode_metrics", {}).get("distance")
            log.info("episode %d/%d (id %d): %d steps, %s, return %.2f%s (%.0f s)", len(written), options.episodes, written[-1], n,
                     "truncated" if truncated else "ended", sum(steps["rewards"]),
                     f", distance {distance:.2f} m" if distance is not None else "", time.time() - began)
    except KeyboardInterrupt:
        log.warning("stopped: the %d episode(s) finished before Ctrl-C are in %s; the one in progress is dropped", len(written), options.dataset)
    finally:
        env.close()
        held.close()
    return written


def _action_noise(space, noise: float | None, seed: int):
    """``actions -> actions``: adds N(0, (noise · half the range)²) to each action dimension, clipped to the bounds
    (the policy collector's ``noise``); the identity when ``noise`` is None or 0."""
    from gymnasium import spaces

    if not noise:
        return lambda actions: actions
    if not isinstance(space, spaces.Box):
        raise UserError(f"noise={noise}: action noise needs Box actions; this env's are {space}. Leave noise out.")
    rng, scale = np.random.default_rng(seed), noise * (space.high - space.low) / 2
    return lambda actions: np.clip(actions + rng.normal(0.0, 1.0, actions.shape) * scale, space.low, space.high).astype(space.dtype)


def _stack(observations: list):
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


def _raw(env, obs, terminal=None):
    """The env's own observation of copy 0 (``terminal``: the one an episode ended on, which the vec env keeps in
    its info), as the env gave it: un-normalised where the model's checkpoint normalises observations."""
    from stable_baselines3.common.vec_env import VecNormalize

    if terminal is not None:
        first = terminal if not isinstance(obs, dict) else {k: np.asarray(v) for k, v in terminal.items()}
        return env.unnormalize_obs(first) if isinstance(env, VecNormalize) else first
    if isinstance(env, VecNormalize):
        obs = env.get_original_obs()
    return {k: v[0] for k, v in obs.items()} if isinstance(obs, dict) else obs[0]


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``experiment/collect.py``: exit 0, or 2 with one ``error:`` line on bad input."""
    from hydrarl.datasets.episodes import EpisodeDataset

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    options = parse(sys.argv[1:] if argv is None else argv)
    written = collect(options)

    data = EpisodeDataset(options.dataset).read()
    print(f"{len(written)} episode(s) written to {options.dataset} (ids {written[0] if written else '-'}..{written[-1] if written else '-'}); "
          f"it holds {data.total_episodes} episodes, {data.total_steps} steps. Read it with "
          f"minari.MinariDataset({str(options.dataset / 'data')!r}).")
    return 0
