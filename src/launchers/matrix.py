"""The regression matrix: which jobs each tier runs, and whether they pass.

Function tier: every env x algorithm pair of the config tree is first built at the agent factory (the
checks a run does), then each pair it builds trains for one short epoch and passes a save -> load -> predict
round trip (both in one process: ``roundtrip --train``). A pair the factory refuses (the algorithm cannot act
in the env: ``Incompatible``, or an extra not installed: ``MissingDependency``) is compared with the expected
refusals, ``conf/refused_pairs.yaml``: a refusal it does not list, a listed pair that builds, and a pair that
cannot be built for any other reason (a bad value, an unknown argument, a crash) are problems that fail the tier.

Performance tier: the bars in ``conf/performance/<Env>/<algo>.yaml``; each bar runs
``total_runs`` seeds and passes when at least ``succ_runs`` of them pass. A run passes when the
mean of its last ``last_n`` evaluations of ``metric`` is >= ``value`` at or before ``max_steps``
env steps: the early-stop rule of ``hydrarl.training.stopping``, which each run applies itself (its
``trainer.early_stop`` is the bar's) and reports in its TrialResult (``met_at_step``, ``best_mean``);
the run stops once the rule holds, and the remaining runs of a bar are not started once it can no
longer pass. A bar whose pair cannot be built (refused or failing at the agent factory) fails before any run.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hydrarl.config.compose import available, compose
from hydrarl.errors import Incompatible, MissingDependency, UserError
from hydrarl.launchers.scheduler import MatrixJob
from hydrarl.paths import CONF_DIR
from hydrarl.training.jobs import train_command
from hydrarl.training.stopping import Progress, progress

# One short epoch: small warm-up and batches (only the keys an algorithm has are set). buffer_size
# also bounds image envs' replay buffers (CarRacingContinuous: 2000 x 55 kB). One optimisation pass
# per rollout for ppo/recurrent_ppo (n_epochs) and a short conjugate gradient for trpo: with a CNN
# policy (CarRacing) their defaults made a one-epoch check last 12-24 s.
FAST_ALGORITHM = {"learning_starts": 50, "batch_size": 32, "buffer_size": 2000, "n_steps": 32, "n_delta": 2,
                  "n_epochs": 1, "cg_max_steps": 3, "n_critic_updates": 1}
# In the function tier's 100-step epoch an off-policy agent starts updating after this many env steps: its
# 10 updates exercise train() as 50 would, at a fifth of the cost for image policies (PenguinPi, CarRacing).
FUNCTION_LEARNING_STARTS = 90
FUNCTION_TRAINER = ["trainer.n_epochs=1", "trainer.eval_after_n_steps=100", "trainer.n_test_rollouts=1",
                    "trainer.progress_bar=false", "env.max_episode_steps=50", "logger=[]", "seed=0"]


BARS_DIR = CONF_DIR / "performance"


def fast_overrides(algo_cfg) -> list[str]:
    """The ``FAST_ALGORITHM`` overrides for the keys an algorithm config has."""
    return [f"algorithm.{k}={v}" for k, v in FAST_ALGORITHM.items() if k in algo_cfg]


@functools.cache
def algorithm_fast_overrides(algorithm: str) -> tuple[str, ...]:
    """``fast_overrides`` of ``conf/algorithm/<algorithm>.yaml``: they depend on its keys only, not on the env,
    so each algorithm is composed once (with the default env)."""
    return tuple(fast_overrides(compose([f"algorithm={algorithm}"], check=False).algorithm))


Pair = tuple[str, str]  # (env, algorithm)
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
    config that composes) and shared."""
    from hydrarl.agents.factory import build_agent
    from hydrarl.envs.factory import make_vec_env

    checks: dict[Pair, PairCheck] = {}
    env, env_error = None, None
    try:
        for algorithm, overrides in requests:
            try:
                cfg = compose([f"env={env_name}", f"algorithm={algorithm}", *overrides])
                if env_error is not None:
                    raise env_error
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


def _check_groups(groups: list[tuple[str, list[tuple[str, tuple[str, ...]]]]], workers: int) -> dict[Pair, PairCheck]:
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
    :func:`algorithm_fast_overrides`, then ``overrides``): a default replay buffer of images (1e6 x 55 kB)
    cannot be allocated. With ``workers`` > 1 the envs are checked in that many processes at once. The
    result keeps the order of ``selected``."""
    by_env: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for env_name, algorithm in selected:
        by_env.setdefault(env_name, []).append((algorithm, (*algorithm_fast_overrides(algorithm), *overrides)))
    checks = _check_groups(list(by_env.items()), workers)
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


def matches(name: str, pattern: str | None) -> bool:
    """``-f`` filter: a substring of ``<Env>/<algo>`` (case-insensitive)."""
    return not pattern or pattern.lower() in name.lower()


def select_pairs(pattern: str | None) -> list[Pair]:
    """The env x algorithm pairs the ``-f`` filter selects; a UserError when it selects none (checked before the
    tier makes its output folder)."""
    selected = [(e, a) for e in available("env") for a in available("algorithm") if matches(f"{e}/{a}", pattern)]
    if not selected:
        raise UserError(f"no env x algorithm pair matches -f {pattern!r}; pairs are named <Env>/<algo>, e.g. CartPole/ppo")
    return selected


def function_jobs(out: Path, selected: list[Pair], say=print, keep_runs: bool = False, workers: int = 1,
                  overrides: tuple[str, ...] = (), refusals: Path = REFUSALS_FILE
                  ) -> tuple[list[MatrixJob], list[str], dict[Pair, PairCheck]]:
    """One job per pair of ``selected`` (:func:`select_pairs`) the agent factory builds (its run dir is deleted once
    it passes unless ``keep_runs``), the problems :func:`pair_problems` finds against the expected refusals in
    ``refusals``, and every check. ``workers``: processes that check the pairs; ``overrides``: added to every
    pair's config (after its fast overrides)."""
    expected = ExpectedRefusals.load(refusals)
    checks = check_pairs(selected, workers, overrides)
    problems = pair_problems(checks, expected)
    valid = [pair for pair, check in checks.items() if check.outcome == VALID]
    refused = sum(check.outcome == REFUSED for check in checks.values())
    say(f"function tier: {len(checks)} env x algorithm pair(s) checked at the agent factory: {len(valid)} built, "
        f"{refused} refused (expected: {refusals}), {len(problems)} problem(s)")
    for line in problems:
        say(f"FAIL {line}")
    jobs = []
    for env_name, algorithm in valid:
        fast = [f"algorithm.learning_starts={FUNCTION_LEARNING_STARTS}" if o.startswith("algorithm.learning_starts=") else o
                for o in algorithm_fast_overrides(algorithm)]
        run_dir = out / "runs" / f"{env_name}_{algorithm}"
        train_then_check = [sys.executable, "-m", "hydrarl.launchers.roundtrip", "--train", f"env={env_name}",
                            f"algorithm={algorithm}", *FUNCTION_TRAINER, *fast, *overrides, f"hydra.run.dir={run_dir}"]
        jobs.append(MatrixJob(f"{env_name}/{algorithm}", train_then_check, out / "logs" / f"{env_name}_{algorithm}.log",
                              run_dir=run_dir, scratch=None if keep_runs else run_dir))
    if not jobs and not problems:
        raise UserError(f"no pair -f selects can be built: {', '.join(f'{e}/{a}' for e, a in selected)} "
                        f"{'is' if len(selected) == 1 else 'are'} refused, as {refusals} expects")
    return jobs, problems, checks


# -- performance tier -------------------------------------------------------------------------------

@dataclass
class Bar:
    """A performance bar (``conf/performance/<Env>/<algo>.yaml``)."""

    name: str                  # <Env>/<algo>
    total_runs: int
    succ_runs: int
    metric: str
    value: float
    max_steps: int
    last_n: int = 3
    eval_after_n_steps: int = 1000
    n_test_rollouts: int = 10
    overrides: tuple[str, ...] = ()
    provenance: dict[str, Any] | None = None

    @property
    def rule(self) -> str:
        """The bar in words (verdict.json, the failure line)."""
        return (f"mean of the last {self.last_n} evaluations of {self.metric} >= {self.value} at or before "
                f"{self.max_steps} env steps, in at least {self.succ_runs} of {self.total_runs} runs")

    @classmethod
    def load(cls, path: Path, root: Path = BARS_DIR) -> Bar:
        data = yaml.safe_load(path.read_text())
        name = str(path.relative_to(root).with_suffix(""))
        data.pop("rule", None)  # older bars carried the rule as prose: it is generated (Bar.rule)
        data["overrides"] = tuple(data.get("overrides") or ())
        try:
            return cls(name=name, **data)
        except TypeError as exc:
            raise UserError(f"bar {path}: {exc}") from exc

    @property
    def pair(self) -> Pair:
        env, algorithm = self.name.split("/")
        return env, algorithm

    def run_overrides(self, seed: int) -> list[str]:
        """The overrides of the bar's run with ``seed``: its pair, then :meth:`settings`."""
        env, algorithm = self.pair
        return [f"env={env}", f"algorithm={algorithm}", *self.settings(seed)]

    def settings(self, seed: int) -> list[str]:
        """The overrides of the bar's run after its pair: seed, trainer (the bar's rule as the early stop), the bar's own."""
        epochs = math.ceil(self.max_steps / self.eval_after_n_steps)
        return [f"seed={seed}", f"trainer.n_epochs={epochs}",
                f"trainer.eval_after_n_steps={self.eval_after_n_steps}", f"trainer.n_test_rollouts={self.n_test_rollouts}",
                f"trainer.metric={self.metric}", f"trainer.early_stop.threshold={self.value}",
                f"trainer.early_stop.last_n={self.last_n}", "trainer.progress_bar=false", *self.overrides]


def load_bars(pattern: str | None, root: Path = BARS_DIR) -> list[Bar]:
    """The bars under ``root`` the ``-f`` filter selects; a UserError when it selects none (checked before the tier
    makes its output folder)."""
    bars = [Bar.load(root / f"{name}.yaml", root) for name in available("performance", root) if matches(name, pattern)]
    if not bars:
        raise UserError(f"no performance bar matches -f {pattern!r}; bars: {', '.join(available('performance', root))}")
    return bars


def judge(reached: Progress, bar: Bar) -> dict[str, Any]:
    """Did a run that went as ``reached`` meet the bar? Returns passed, the env steps where it did, and
    the best mean of ``last_n`` evaluations reached."""
    passed = reached.met_at_step is not None and reached.met_at_step <= bar.max_steps
    return {"passed": passed, "steps": reached.met_at_step if passed else None, "best_mean": reached.best_mean}


def run_verdict(result: dict[str, Any] | None, bar: Bar) -> dict[str, Any]:
    """:func:`judge` of a run of the bar from its TrialResult (as a dict; None: the run left none)."""
    if result is None:
        return judge(Progress(), bar)
    return judge(Progress(result.get("best_mean"), result.get("met_at_step")), bar)


def curve_verdict(points: Iterable[tuple[int | None, float]], bar: Bar) -> dict[str, Any]:
    """:func:`judge` of (env steps, value of ``bar.metric``) per epoch: a run made otherwise (a benchmark,
    a bar's recorded measurements)."""
    return judge(progress(points, bar.last_n, bar.value), bar)


def performance_jobs(out: Path, bars: list[Bar], say=print, workers: int = 1,
                     overrides: tuple[str, ...] = ()) -> tuple[list[MatrixJob], dict[str, str]]:
    """The runs of each of ``bars`` (:func:`load_bars`; ``overrides`` added to each), and {bar: why its pair cannot
    be built}: each bar's pair is first built at the agent factory with the bar's settings (only its replay buffer
    shrunk), and a bar whose pair is refused or fails gets no runs and fails (:func:`bar_verdicts`)."""
    groups = []
    for bar in bars:
        env_name, algorithm = bar.pair
        shrink = tuple(o for o in algorithm_fast_overrides(algorithm) if o.startswith("algorithm.buffer_size="))
        groups.append((env_name, [(algorithm, (*bar.settings(1), *overrides, *shrink))]))
    checks = _check_groups(groups, workers)
    cannot_build = {bar.name: f"{checks[bar.pair].outcome}: {checks[bar.pair].reason}" for bar in bars
                    if checks[bar.pair].outcome != VALID}
    jobs = []
    for bar in bars:
        if bar.name in cannot_build:
            say(f"FAIL {bar.name}: its pair cannot be built ({cannot_build[bar.name]}); no run started")
            continue
        for seed in range(1, bar.total_runs + 1):
            run_dir = out / "runs" / f"{bar.name.replace('/', '_')}_seed{seed}"
            cmd = train_command([*bar.run_overrides(seed), *overrides, f"hydra.run.dir={run_dir}"])
            jobs.append(MatrixJob(f"{bar.name}#seed{seed}", cmd, out / "logs" / f"{bar.name.replace('/', '_')}_seed{seed}.log",
                                  meta={"bar": bar.name, "seed": seed}, run_dir=run_dir))
    say(f"performance tier: {len(bars)} bar(s), {len(jobs)} run(s)")
    return jobs, cannot_build


def bar_verdicts(jobs: list[MatrixJob], bars: list[Bar], cannot_build: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One verdict per bar from its runs' TrialResults; a bar in ``cannot_build`` fails with that reason."""
    cannot_build = cannot_build or {}
    verdicts = []
    for bar in bars:
        runs = []
        for job in (j for j in jobs if j.meta.get("bar") == bar.name):
            if job.returncode is None:
                runs.append({"seed": job.meta["seed"], "passed": False, "skipped": True, "best_mean": None, "steps": None})
                continue
            runs.append({"seed": job.meta["seed"], "job_ok": job.ok, **run_verdict(job.result, bar)})
            runs[-1]["passed"] = runs[-1]["passed"] and job.ok
        passed = sum(r["passed"] for r in runs)
        best = max((r["best_mean"] for r in runs if r.get("best_mean") is not None), default=None)
        verdicts.append({"bar": bar.name, "rule": bar.rule, "passed_runs": passed, "needed_runs": bar.succ_runs,
                         "passed": passed >= bar.succ_runs and bar.name not in cannot_build, "value_needed": bar.value,
                         "best_value_reached": best, "runs": runs, "cannot_build": cannot_build.get(bar.name)})
    return verdicts


def hopeless(bar: Bar, jobs: list[MatrixJob]) -> bool:
    """True once so many runs of ``bar`` failed that ``succ_runs`` can no longer be reached."""
    mine = [j for j in jobs if j.meta.get("bar") == bar.name]
    finished = [j for j in mine if j.returncode is not None]
    failed = 0
    for job in finished:
        failed += not (job.ok and run_verdict(job.result, bar)["passed"])
    return len(mine) - failed < bar.succ_runs
