"""Compare agents over many episodes: the logic behind ``experiment/evaluate.py``.

::

    python experiment/evaluate.py RUN_DIR|MODEL_ZIP ... [--controller Env/algo ...] [--env NAME]
                                  [--episodes 50] [--seed 0] [--checkpoint best|last] [--stochastic]
                                  [--video N] [--out DIR]

Agents: a run directory (its ``checkpoints/<--checkpoint>/model.zip``, default ``best``), a
``model.zip`` inside a run directory (any checkpoint), or ``--controller '<Env>/<algo> [key=value ...]'``
(a controller built from the config tree, e.g. ``CartPole/random``, with optional config overrides). A saved model is loaded with the
class its run's ``config.yaml`` names, with the checkpoint's ``vecnormalize.pkl`` (frozen) when the
env normalises.

``--env 'NAME [env.KEY=VALUE ...]'`` has every saved run's agent play in ``conf/env/NAME.yaml`` (composed as
``env=NAME`` with the overrides) instead of its run's env, with its run's ``normalize`` setting and its checkpoint's statistics
(they belong to the agent), e.g. a policy trained on ``Bumps`` tested on ``BumpsTest``; controllers keep the
env they name. The model's observation and action spaces must equal that env's (SB3's check when loading),
else a UserError before any episode; such a row's ``env`` is the env id played, its label says so:
``Bumps/ppo seed 1 (on BumpsTest)``.

Each agent plays ``--episodes`` episodes in one copy of its env (its run's config, or ``--env``):
``env.seed(seed)``, one reset, then episodes back to back, the deterministic policy unless
``--stochastic``; the agent's own random state is seeded with the same seed (global RNGs, and a
random controller's sampler). So episode 1 starts from ``env.reset(seed=seed)``, later episodes
from the env's RNG after that, and the same command prints the same table.

Output: a markdown table on stdout (and ``table.md``), ``table.csv`` with full-precision numbers
and each agent's source, ``episodes.csv`` with every episode, under ``--out`` (default
``runs/evaluate/<date>_<time>/``); with ``--video N``, ``videos/<k>_<agent>.mp4`` of each agent's
first N episodes (played again with the same seeds in a rendering copy of the env it played). Labels are
unique (a repeated one gets `` #2``, `` #3``...). Bad input is a UserError: one line on stderr, exit status 2,
before anything is played or written.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv
from tqdm import tqdm

from hydrarl.analysis.eval_env import EnvChoice, check_spaces, env_choice, play_env_config
from hydrarl.analysis.final_scores import report, report_lines
from hydrarl.analysis.output import out_argument, output_folder
from hydrarl.analysis.tables import text_table
from hydrarl.cli_args import ArgumentParser, number
from hydrarl.config.runs import find_model
from hydrarl.errors import UserError, exit_on_user_error
from hydrarl.paths import CONF_DIR
from hydrarl.training.backends import set_up_backends
from hydrarl.training.checkpoint import BEST, LAST, load_normalization
from hydrarl.training.evaluation import Episodes, run_episodes, summarize

CHECKPOINTS = (BEST, LAST)


@dataclass
class Agent:
    """One row of the table: what to load or build, and the env it acts in."""

    label: str                      # e.g. "FetchReach/sac_her seed 1", "Bumps/ppo seed 1 (on BumpsTest)" or "CartPole/random"
    env_cfg: DictConfig             # the env config it plays in: its run's, --env's, or the controller's composition
    source: str                     # the model.zip it is loaded from, or "controller <Env>/<algo>"
    make_model: Callable[[VecEnv, int], BaseAlgorithm]  # (env, seed) -> the agent acting in env
    checkpoint: Path | None = None  # directory whose vecnormalize.pkl the env uses

    @property
    def env_id(self) -> str:
        return str(self.env_cfg.id).split(":")[-1]


@dataclass
class AgentResult:
    agent: Agent
    episodes: Episodes
    seconds: float
    video: Path | None = None       # MP4 of the first episodes, with --video

    def row(self) -> dict[str, object]:
        """The table row: numbers as floats (success rate None where the env reports no success); the
        statistics are the ones training's evaluation logs (:func:`summarize`)."""
        stats = summarize(self.episodes)
        return {
            "agent": self.agent.label,
            "env": self.agent.env_id,
            "episodes": len(self.episodes.returns),
            "mean_return": stats["eval/mean_reward"],
            "std_return": stats["eval/std_reward"],
            "min_return": stats["eval/min_reward"],
            "max_return": stats["eval/max_reward"],
            "mean_length": stats["eval/mean_ep_length"],
            "success_rate": stats.get("eval/success_rate"),
            "source": self.agent.source,
        }


# -- which agents ----------------------------------------------------------------------------------

def agent_from_path(path: str | Path, checkpoint: str = BEST, env: EnvChoice | None = None) -> Agent:
    """A run directory (its ``checkpoints/<checkpoint>/model.zip``) or a ``model.zip`` inside one; with ``env``
    (``--env``), acting in that env config instead of its run's (its spaces checked here, before any episode)."""
    from hydrarl.agents.factory import algorithm_class

    set_up_backends(1)  # one thread per tool; before the class is looked up (a JAX agent's imports JAX)
    _, model_path, cfg = find_model(path, checkpoint)
    cls = algorithm_class(cfg.algorithm, str(cfg.algorithm_name))
    name = model_path.parent.name
    run_seed = cfg.get("seed")
    run_label = f"{cfg.env_name}/{cfg.algorithm_name}" + (f" seed {run_seed}" if run_seed is not None else "")
    notes = ([] if name == BEST else [name]) + ([] if env is None else [f"on {env.name}"])
    label = run_label + (f" ({', '.join(notes)})" if notes else "")
    env_cfg = cfg.env if env is None else play_env_config(env, cfg.env)
    if env is not None:
        check_spaces(model_path, cls, run_label, env, env_cfg)
    played = cfg.env_name if env is None else env.name

    def make_model(vec_env: VecEnv, seed: int) -> BaseAlgorithm:
        try:
            return cls.load(model_path, env=vec_env, device="cpu")
        except Exception as exc:  # noqa: BLE001  (a model that does not fit its run is the user's input)
            raise UserError(f"{model_path} cannot be loaded as {cls.__name__} for env {played}: {exc}") from exc

    return Agent(label, env_cfg, str(model_path), make_model, checkpoint=model_path.parent)


def unique_labels(agents: list[Agent]) -> list[Agent]:
    """``agents``, a repeated label made unique in place: the second ``X`` becomes ``X #2``, and so on."""
    seen: dict[str, int] = {}
    for agent in agents:
        seen[agent.label] = seen.get(agent.label, 0) + 1
        if seen[agent.label] > 1:
            agent.label = f"{agent.label} #{seen[agent.label]}"
    return agents


def _is_controller(algorithm: str) -> bool:
    """Does ``conf/algorithm/<algorithm>.yaml`` name a Controller class?"""
    from hydra.utils import get_class

    from hydrarl.agents.controllers import Controller

    target = str(OmegaConf.load(CONF_DIR / "algorithm" / f"{algorithm}.yaml").get("_target_", ""))
    try:
        return issubclass(get_class(target), Controller)
    except Exception:  # noqa: BLE001 - an algorithm whose class cannot be imported here is not a controller
        return False


def agent_from_controller(spec: str) -> Agent:
    """``<Env>/<algo> [key=value ...]``: a controller (an agent that does not learn) built from the
    config tree, with optional config overrides (e.g. ``env.kwargs.privileged=true``)."""
    from hydrarl.agents.controllers import Controller
    from hydrarl.agents.factory import algorithm_class, apply_env_overrides, build_agent
    from hydrarl.config.compose import available, compose_for

    set_up_backends(1)
    pair, *overrides = spec.split() or [""]
    env_name, _, algorithm = pair.partition("/")
    if not env_name or not algorithm or "/" in algorithm:
        raise UserError(f"--controller {spec}: give <Env>/<algo>, e.g. CartPole/random.")
    cfg = compose_for("--controller", spec, {"env": env_name, "algorithm": algorithm}, overrides)
    apply_env_overrides(cfg.algorithm, cfg.env, algorithm)  # e.g. the ensemble's members normalise for themselves
    if not issubclass(algorithm_class(cfg.algorithm, algorithm), Controller):
        controllers = [a for a in available("algorithm") if _is_controller(a)]
        raise UserError(f"--controller {spec}: algorithm={algorithm} learns, it is not a controller; evaluate a trained run "
                        f"directory instead. Controllers: {', '.join(controllers)}.")

    def make_model(env: VecEnv, seed: int) -> BaseAlgorithm:
        return build_agent(cfg.algorithm, env, seed, "cpu", name=algorithm, env_name=env_name)

    return Agent(spec, cfg.env, f"controller {spec}", make_model)


# -- the evaluation loop ------------------------------------------------------------------------------

def make_eval_env(agent: Agent, seed: int, render_mode: str | None = None) -> VecEnv:
    """One copy of the agent's env, seeded; its checkpoint's normalisation statistics, frozen."""
    from hydrarl.envs.factory import make_vec_env

    env = make_vec_env(agent.env_cfg, seed, n_envs=1, training=False, render_mode=render_mode)
    if agent.checkpoint is not None:
        env = load_normalization(agent.checkpoint, env)
    return env


def evaluate_agent(agent: Agent, n_episodes: int, seed: int, deterministic: bool = True,
                   on_episode: Callable[[Episodes], None] | None = None, video: Path | None = None,
                   video_episodes: int = 0) -> AgentResult:
    """Play ``n_episodes`` episodes of ``agent`` in its env from ``seed`` (see the module doc); with
    ``video``, replay the first ``video_episodes`` of them (same seeds) in a rendering copy into that MP4."""
    from hydrarl.training.video import record_video

    started = time.perf_counter()
    set_random_seed(seed)
    env = make_eval_env(agent, seed)
    try:
        model = agent.make_model(env, seed)
        model.set_random_seed(seed)
        episodes = run_episodes(model, env, n_episodes, seed, deterministic, on_episode)
    finally:
        env.close()
    seconds = time.perf_counter() - started
    if video is not None and video_episodes > 0:
        set_random_seed(seed)
        model.set_random_seed(seed)
        render_env = make_eval_env(agent, seed, render_mode="rgb_array")
        try:
            record_video(model, render_env, video, video_episodes, seed, deterministic)
        finally:
            render_env.close()
    return AgentResult(agent, episodes, seconds, video if video_episodes > 0 else None)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def evaluate_agents(agents: list[Agent], n_episodes: int, seed: int, deterministic: bool = True,
                    say: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
                    video_dir: Path | None = None, video_episodes: int = 0) -> list[AgentResult]:
    """Evaluate each agent in turn; a line per agent (and a tqdm bar over episodes on a terminal).
    With ``video_episodes`` > 0, each agent's first episodes go to ``video_dir/<agent>.mp4``."""
    results = []
    for i, agent in enumerate(agents, 1):
        video = video_dir / f"{i:02d}_{_slug(agent.label)}.mp4" if video_dir is not None and video_episodes > 0 else None
        with tqdm(total=n_episodes, unit="episode", desc=agent.label, leave=False, disable=None, file=sys.stderr) as bar:
            result = evaluate_agent(agent, n_episodes, seed, deterministic, on_episode=lambda _e, bar=bar: bar.update(1),
                                    video=video, video_episodes=video_episodes)
        row = result.row()
        success = "" if row["success_rate"] is None else f", success {row['success_rate']:.2f}"
        say(f"[{i}/{len(agents)}] {agent.label} on {agent.env_id}: {n_episodes} episodes, "
            f"return {row['mean_return']:.2f} ± {row['std_return']:.2f}{success} ({result.seconds:.1f} s)")
        results.append(result)
    return results


# -- the table ----------------------------------------------------------------------------------------

COLUMNS = [  # (row key, markdown header, format)
    ("agent", "agent", "{}"),
    ("env", "env", "{}"),
    ("episodes", "episodes", "{}"),
    ("mean_return", "mean return", "{:.2f}"),
    ("std_return", "std", "{:.2f}"),
    ("min_return", "min", "{:.2f}"),
    ("max_return", "max", "{:.2f}"),
    ("mean_length", "mean length", "{:.2f}"),
    ("success_rate", "success rate", "{:.2f}"),
]
CSV_COLUMNS = [key for key, _, _ in COLUMNS] + ["source"]


def to_markdown(rows: list[dict[str, object]]) -> str:
    """A markdown table (numbers right-aligned; success rate blank where the env reports none)."""
    cells = [[("" if row[key] is None else fmt.format(row[key])) for key, _, fmt in COLUMNS] for row in rows]
    numeric = [fmt != "{}" or key == "episodes" for key, _, fmt in COLUMNS]
    return text_table([header for _, header, _ in COLUMNS], cells, right=numeric, markdown=True) + "\n"


def write_tables(results: list[AgentResult], out: Path) -> tuple[Path, Path, Path]:
    """``table.md``, ``table.csv`` (full precision) and ``episodes.csv`` (one line per episode) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in results]
    md, table_csv, episodes_csv = out / "table.md", out / "table.csv", out / "episodes.csv"
    md.write_text(to_markdown(rows))
    with open(table_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    with open(episodes_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["agent", "episode", "return", "length", "success"])
        for result in results:
            e = result.episodes
            for i, (ret, length) in enumerate(zip(e.returns, e.lengths, strict=True)):
                writer.writerow([result.agent.label, i + 1, ret, length, e.successes[i] if e.successes else ""])
    return md, table_csv, episodes_csv


def across_seeds(results: list[AgentResult], reps: int = 2000, seed: int = 0) -> list[str]:
    """rliable's aggregates over the seeds of each agent (agents whose labels differ only in ``seed N``), for the
    mean return and, where every agent of the groups has one, the success rate: text lines, none when no agent has
    two seeds (:mod:`hydrarl.analysis.final_scores`)."""
    groups: dict[str, list[dict[str, object]]] = {}
    for result in results:
        groups.setdefault(re.sub(r" seed \d+", "", result.agent.label), []).append(result.row())
    if max(len(rows) for rows in groups.values()) < 2:
        return []
    lines = []
    for key, what in (("mean_return", "mean return"), ("success_rate", "success rate")):
        scores = {label: np.array([row[key] for row in rows], dtype=float) for label, rows in groups.items()
                  if all(row[key] is not None for row in rows)}
        if scores:
            summary, pairs = report(scores, reps, seed)
            lines += ["", *report_lines(scores, summary, pairs, f"{what} of each seed", reps)]
    return lines


# -- command line -------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="experiment/evaluate.py",
        description="Evaluate trained runs and controllers over many episodes and print one table.",
    )
    p.add_argument("agents", nargs="*", metavar="RUN_DIR|MODEL_ZIP", help="a run directory, or a model.zip inside one")
    p.add_argument("--controller", action="append", default=[], metavar="'ENV/ALGO [KEY=VALUE ...]'",
                   help="a controller from the config tree, e.g. CartPole/random, with optional overrides in the same "
                        "quoted argument, e.g. 'Bumps/bumps_oracle env.kwargs.privileged=true' (repeatable)")
    p.add_argument("--env", default=None, metavar="'NAME [env.KEY=VALUE ...]'",
                   help="play the runs' agents (not the controllers) in conf/env/NAME.yaml, with optional overrides in the "
                        "same quoted argument, instead of their runs' env, e.g. a Bumps policy in BumpsTest, or "
                        "'Cassie env.kwargs.speeds=[0.2,0.5,0.8]'; its observation and action spaces must equal the model's")
    p.add_argument("--episodes", type=number(int, "episodes per agent", least=1), default=50, help="episodes per agent (default 50)")
    p.add_argument("--seed", type=number(int, "seed of the env and the agent", least=0), default=0, help="seeds the env and the agent's own randomness (default 0)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default=BEST, help="checkpoint of a run directory (default best)")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic policy")
    p.add_argument("--video", type=number(int, "episodes recorded per agent", least=0), default=0, metavar="N",
                   help="also record each agent's first N episodes (same seeds) as <out>/videos/<agent>.mp4 (default 0: none)")
    p.add_argument("--out", type=out_argument, default=None, help="output directory (default runs/evaluate/<date>_<time>/)")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.agents and not args.controller:
        raise UserError("nothing to evaluate: give run directories or model.zip files, and/or --controller <Env>/<algo>.")
    if args.video > args.episodes:
        raise UserError(f"--video {args.video}: give 0 (no video) up to --episodes ({args.episodes}).")
    if args.env is not None and not args.agents:
        raise UserError(f"--env {args.env} applies to run directories and model.zip files; a --controller names its env (Env/algo).")
    play_env = env_choice(args.env) if args.env is not None else None
    agents = unique_labels([agent_from_path(p, args.checkpoint, play_env) for p in args.agents]
                           + [agent_from_controller(c) for c in args.controller])
    with output_folder(args.out, "evaluate") as out:
        results = evaluate_agents(agents, args.episodes, args.seed, deterministic=not args.stochastic,
                                  video_dir=out / "videos", video_episodes=args.video)
        policy = "stochastic" if args.stochastic else "deterministic"
        print(f"\n{args.episodes} episodes per agent, seed {args.seed}, {policy} policy\n")
        print(to_markdown([r.row() for r in results]), flush=True)  # on stdout before the files: a full disk loses no result
        paths = list(write_tables(results, out))
        aggregates = "\n".join(across_seeds(results)[1:])
        if aggregates:
            print(aggregates, flush=True)
            paths.append(out / "aggregates.md")
            paths[-1].write_text(aggregates + "\n")
    for path in [*paths, *(r.video for r in results if r.video is not None)]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
