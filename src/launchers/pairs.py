"""Env x algorithm pairs at the agent factory: each pair built with the sizes its function-tier job uses
(``check_pairs``: built, refused or failed, and why), and the pairs the factory is expected to refuse
(``conf/refused_pairs.yaml``, :class:`ExpectedRefusals`), compared by :func:`pair_problems`.

A pair is *refused* only when the algorithm cannot act in the env (:class:`~hydrarl.errors.Incompatible`) or an
optional extra is not installed (:class:`~hydrarl.errors.MissingDependency`); anything else that goes wrong while
building it (a bad value, an unknown argument, a crash) is a failure of that pair. The regression matrix
(``hydrarl.launchers.matrix``) and ``tests/agents/test_pairs.py`` use this one module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from hydrarl.config.compose import available, compose
from hydrarl.errors import Incompatible, MissingDependency, UserError
from hydrarl.paths import CONF_DIR

# One short epoch: small warm-up and batches (only the keys an algorithm has are set). buffer_size
# also bounds image envs' replay buffers (CarRacingContinuous: 2000 x 55 kB). One optimisation pass
# per rollout for ppo/recurrent_ppo (n_epochs) and a short conjugate gradient for trpo: with a CNN
# policy (CarRacing) their defaults made a one-epoch check last 12-24 s. The recurrent agents (rsac, rtd3, rdpg)
# train on 16-step segments instead of whole episodes (their batch_size counts sequences).
FAST_ALGORITHM = {"learning_starts": 50, "batch_size": 32, "buffer_size": 2000, "segment_len": 16, "n_steps": 32,
                  "n_delta": 2, "n_epochs": 1, "cg_max_steps": 3, "n_critic_updates": 1, "dataset": "random",
                  "random_episodes": 2, "image_pool": 4}
# Per env: PenguinPi's image agents observe 36 of the 80 camera rows (the fewest NatureCNN takes), so their first
# layer has 2.3k inputs instead of 13.8k: building, saving and loading its 7M weights made each of their jobs 8-18 s.
# (The offline agents' image_pool of 4 above leaves their two convs 9 of those 36 rows; their default of 8, 4 rows.)
FAST_ENV = {"PenguinPi": ("env.kwargs.crop_rows=36",)}


def fast_overrides(algo_cfg) -> list[str]:
    """The ``FAST_ALGORITHM`` overrides for the keys an algorithm config has."""
    return [f"algorithm.{k}={v}" for k, v in FAST_ALGORITHM.items() if k in algo_cfg]


@functools.cache
def _algorithm_config(algorithm: str):
    """``conf/algorithm/<algorithm>.yaml`` as composed with the default env (once per algorithm)."""
    return compose([f"algorithm={algorithm}"], check=False).algorithm


def algorithm_fast_overrides(algorithm: str) -> tuple[str, ...]:
    """``fast_overrides`` of ``conf/algorithm/<algorithm>.yaml``: they depend on its keys only, not on the env."""
    return tuple(fast_overrides(_algorithm_config(algorithm)))


def pair_fast_overrides(env_name: str, algorithm: str) -> tuple[str, ...]:
    """The function tier's sizes for one pair: its algorithm's :func:`algorithm_fast_overrides`, then its env's
    ``FAST_ENV``."""
    return (*algorithm_fast_overrides(algorithm), *FAST_ENV.get(env_name, ()))


# One env of each kind of spaces the expected refusals tell apart: Box vectors, Discrete vectors, goal dicts,
# Discrete images, Box images (the CarRacing drivers), the bumps family, the robot's images.
ENV_KINDS = ("Pendulum", "CartPole", "FetchReach", "CarRacing", "CarRacingContinuous", "Bumps", "PenguinPi")
# Libraries whose agents the function tier trains on ENV_KINDS only, not on every env: sbx-rl's agents are SB3's
# algorithms on JAX, with SB3's collection, buffers and env handling, which the SB3 agents' jobs already run in every
# env; what is their own (networks, updates, saving) depends on the kind of spaces only. A JAX job costs 7-38 s (the
# import, then compiling its networks and update), three to six times a torch job's.
SAMPLED_LIBRARIES = frozenset({"sbx"})


def in_function_sample(env_name: str, algorithm: str) -> bool:
    """Whether the function tier checks this pair by default: every env for most algorithms, ``ENV_KINDS`` for the
    agents of ``SAMPLED_LIBRARIES``."""
    library = str(_algorithm_config(algorithm).get("_target_") or "").split(".")[0]
    return env_name in ENV_KINDS or library not in SAMPLED_LIBRARIES


Pair = tuple[str, str]  # (env, algorithm)


@functools.cache
def _env_policy(env_name: str) -> str:
    """The SB3 policy alias of ``conf/env/<env_name>.yaml`` (MlpPolicy, CnnPolicy, MultiInputPolicy)."""
    return str(compose([f"env={env_name}"], check=False).env.policy)


def covering(built: list[Pair]) -> list[Pair]:
    """The pairs of ``built`` (pairs the agent factory built) that ``run_testing -t function -c`` trains.

    Envs of one *kind*, the same policy alias and built with the same algorithms, are alike to every agent
    (Ant, HalfCheetah, the pendulum and cart-pole POMDPs: Box vectors; FetchPush, FetchSlide: goal dicts), so each
    algorithm trains on one env of each kind it acts in, the envs taken in turn so that each trains at least once:
    ``max(envs, algorithms)`` jobs per kind. An env that is its own kind (CartPole, CarRacing, PenguinPi, Cassie)
    trains with every algorithm. Keeps the order of ``built``."""
    algorithms_of: dict[str, list[str]] = {}
    for env_name, algorithm in built:
        algorithms_of.setdefault(env_name, []).append(algorithm)
    kinds: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for env_name, algorithms in algorithms_of.items():
        kinds.setdefault((_env_policy(env_name), tuple(algorithms)), []).append(env_name)
    chosen = {(envs[i % len(envs)], algorithms[i % len(algorithms)])
              for (_, algorithms), envs in kinds.items() for i in range(max(len(envs), len(algorithms)))}
    return [pair for pair in built if pair in chosen]
VALID, REFUSED, FAILED = "valid", "refused", "failed"


@dataclass(frozen=True)
class PairCheck:
    """What the agent factory made of one env x algorithm pair: ``valid`` (built), ``refused`` (it cannot act
    in this env: :class:`~hydrarl.errors.Incompatible`, or an extra not installed:
    :class:`~hydrarl.errors.MissingDependency`) or ``failed`` (anything else: a bad value, an unknown argument,
    a crash), and why."""

    outcome: str
    reason: str = ""


def _reason(exc: BaseException) -> str:
    """One line for a failure: a UserError's message, or the exception's type and message."""
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 600 else text[:597] + "..."


def _check_env_pairs(env_name: str, requests: list[tuple[str, tuple[str, ...]]]) -> dict[Pair, PairCheck]:
    """Build each ``(algorithm, overrides)`` of ``requests`` on ``env_name`` at the agent factory, as a run
    composes it (``env=<env_name> algorithm=<algorithm> <overrides>``); the env is made once (from the first
    config that composes) and shared, except by an algorithm whose ``env_overrides`` change the env config (HAC):
    it gets its own, built as its runs build it."""
    from hydrarl.agents.factory import apply_env_overrides, build_agent
    from hydrarl.envs.factory import make_vec_env

    checks: dict[Pair, PairCheck] = {}
    env, env_error = None, None
    try:
        for algorithm, overrides in requests:
            try:
                cfg = compose([f"env={env_name}", f"algorithm={algorithm}", *overrides])
                if env_error is not None:
                    raise env_error
                if apply_env_overrides(cfg.algorithm, cfg.env, algorithm):  # this algorithm builds the env its own way
                    own = make_vec_env(cfg.env, 0)
                    try:
                        build_agent(cfg.algorithm, own, 0, "cpu", name=algorithm, env_name=env_name)
                    finally:
                        own.close()
                    checks[(env_name, algorithm)] = PairCheck(VALID)
                    continue
                if env is None:
                    try:
                        env = make_vec_env(cfg.env, 0)
                    except Exception as exc:  # every pair of this env meets the same error: make it once
                        env_error = exc
                        raise
                build_agent(cfg.algorithm, env, 0, "cpu", name=algorithm, env_name=env_name)
                checks[(env_name, algorithm)] = PairCheck(VALID)
            except (Incompatible, MissingDependency) as exc:
                checks[(env_name, algorithm)] = PairCheck(REFUSED, _reason(exc))
            except Exception as exc:  # noqa: BLE001  (a crash while building is that pair's failure, named)
                checks[(env_name, algorithm)] = PairCheck(FAILED, _reason(exc))
    finally:
        if env is not None:
            env.close()
    return checks


def check_groups(groups: list[tuple[str, list[tuple[str, tuple[str, ...]]]]], workers: int) -> dict[Pair, PairCheck]:
    """:func:`_check_env_pairs` of each ``(env, requests)`` group, in ``workers`` processes at once when > 1."""
    if workers > 1 and len(groups) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(groups)), mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_check_env_pairs, *zip(*groups, strict=True)))
    else:
        parts = [_check_env_pairs(env_name, requests) for env_name, requests in groups]
    return {pair: check for part in parts for pair, check in part.items()}


def check_pairs(selected: list[Pair], workers: int = 1, overrides: tuple[str, ...] = ()) -> dict[Pair, PairCheck]:
    """Each selected pair built at the agent factory with the sizes its function-tier job will use (its
    :func:`pair_fast_overrides`, then ``overrides``): a default replay buffer of images
    (1e6 x 55 kB) cannot be allocated. With ``workers`` > 1 the envs are checked in that many processes at once. The
    result keeps the order of ``selected``."""
    by_env: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for env_name, algorithm in selected:
        by_env.setdefault(env_name, []).append((algorithm, (*pair_fast_overrides(env_name, algorithm), *overrides)))
    checks = check_groups(list(by_env.items()), workers)
    return {pair: checks[pair] for pair in selected}


# -- the expected refusals (conf/refused_pairs.yaml) ------------------------------------------------------

REFUSALS_FILE = CONF_DIR / "refused_pairs.yaml"
_GROUP_KEYS = {"reason", "algorithms", "envs", "except", "only_without_screen"}


def _group_names(group: dict, key: str, kind: str, known: dict[str, list[str]], where: str) -> list[str]:
    """The env or algorithm names under ``key`` of a refusals group (``envs: all``: every env), each checked."""
    value = group.get(key) or []
    if value == "all" and key == "envs":
        return known["env"]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: {key} is a list of {kind} names{' or all' if key == 'envs' else ''}, not {value!r}")
    unknown = [v for v in value if v not in known[kind]]
    if unknown:
        raise UserError(f"{where}: {kind}={', '.join(unknown)} is not in conf/{kind}/; known: {', '.join(known[kind])}")
    return value


@dataclass(frozen=True)
class ExpectedRefusals:
    """The pairs the agent factory is expected to refuse, each with its group's reason (``conf/refused_pairs.yaml``)."""

    path: Path
    pairs: dict[Pair, str]

    @classmethod
    def load(cls, path: Path = REFUSALS_FILE) -> ExpectedRefusals:
        """Read ``path``; a UserError naming the file, the group and what is allowed when it is malformed or
        names an env or algorithm ``conf/`` does not have. A group marked ``only_without_screen`` counts only
        on a machine with no screen."""
        from hydrarl.agents.human import display_problem

        try:
            groups = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"expected refusals {path}: cannot be read ({exc})") from None
        if not isinstance(groups, list):
            raise UserError(f"expected refusals {path}: a list of groups (reason, algorithms, envs) is needed, not {type(groups).__name__}")
        known = {"env": available("env"), "algorithm": available("algorithm")}
        pairs: dict[Pair, str] = {}
        for number, group in enumerate(groups, 1):
            where = f"expected refusals {path}, group {number}"
            if not isinstance(group, dict) or not {"reason", "algorithms", "envs"} <= set(group) or set(group) - _GROUP_KEYS:
                raise UserError(f"{where}: give the keys reason, algorithms, envs (and optionally except, only_without_screen); "
                                f"it has {sorted(group) if isinstance(group, dict) else group!r}")
            if group.get("only_without_screen") and display_problem() is None:
                continue

            envs = [e for e in _group_names(group, "envs", "env", known, where)
                    if e not in _group_names(group, "except", "env", known, where)]
            for algorithm in _group_names(group, "algorithms", "algorithm", known, where):
                for env_name in envs:
                    pairs.setdefault((env_name, algorithm), " ".join(str(group["reason"]).split()))
        return cls(Path(path), pairs)


def pair_problems(checks: dict[Pair, PairCheck], expected: ExpectedRefusals) -> list[str]:
    """What is wrong with the pairs checked, one line each: a pair that fails to build, a pair refused that
    ``expected`` does not list (a regression), a pair built that it lists (newly valid). An env checked with
    every algorithm (an algorithm checked in every env) that none of them builds is one line, not one per pair."""
    problem: dict[Pair, str] = {}
    for pair, check in checks.items():
        if check.outcome == FAILED:
            problem[pair] = f"cannot be built: {check.reason}"
        elif check.outcome == REFUSED and pair not in expected.pairs:
            problem[pair] = f"refused, but {expected.path} expects it to train: {check.reason}"
        elif check.outcome == VALID and pair in expected.pairs:
            problem[pair] = (f"now built by the agent factory, but {expected.path} lists it as refused "
                             f"({expected.pairs[pair]}); remove it there so the tier trains it")
    lines = []
    for index, kind, other in ((0, "env", "algorithm"), (1, "algorithm", "env")):
        every = len(available(other))
        for name in dict.fromkeys(pair[index] for pair in problem):
            mine = [pair for pair in checks if pair[index] == name]
            bad = [pair for pair in mine if pair in problem]
            if len(mine) == every and len(bad) >= 2 and all(checks[pair].outcome != VALID for pair in mine):
                first = bad[0]
                lines.append(f"{kind}={name}: no {other} accepts it ({len(bad)} of its {len(mine)} pairs fail, each in "
                             f"verdict.json); e.g. {first[0]}/{first[1]} {problem[first]}")
                for pair in bad:
                    del problem[pair]
    return lines + [f"{env_name}/{algorithm}: {text}" for (env_name, algorithm), text in problem.items()]
