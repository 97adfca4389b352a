"""The regression matrix: which jobs each tier runs, and whether they pass.

Function tier: every env x algorithm pair of the config tree is first built at the agent factory (the
checks a run does; ``hydrarl.launchers.pairs``), then each pair it builds trains for one short epoch and passes a save -> load -> predict
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

import math
import shlex
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hydrarl.config.compose import available
from hydrarl.errors import UserError
from hydrarl.launchers.pairs import (
    REFUSALS_FILE,
    REFUSED,
    VALID,
    ExpectedRefusals,
    Pair,
    PairCheck,
    algorithm_fast_overrides,
    check_groups,
    check_pairs,
    covering,
    in_function_sample,
    pair_fast_overrides,
    pair_problems,
)
from hydrarl.launchers.scheduler import MatrixJob
from hydrarl.paths import CONF_DIR, PROJECT_ROOT
from hydrarl.training.jobs import train_command
from hydrarl.training.result import write_atomic
from hydrarl.training.stopping import Progress, progress

# In the function tier's 50-step epoch (episodes cut at 25 steps) an off-policy agent starts updating after this many
# env steps: its 10 updates exercise train() as 50 would, at a fifth of the cost for image policies (PenguinPi, CarRacing).
FUNCTION_LEARNING_STARTS = 40
FUNCTION_TRAINER = ["trainer.n_epochs=1", "trainer.eval_after_n_steps=50", "trainer.n_test_rollouts=1",
                    "trainer.progress_bar=false", "env.max_episode_steps=25", "logger=[]", "seed=0"]


BARS_DIR = CONF_DIR / "performance"


def matches(name: str, pattern: str | None) -> bool:
    """``-f`` filter: a substring of ``<Env>/<algo>`` (case-insensitive)."""
    return not pattern or pattern.lower() in name.lower()


def select_pairs(pattern: str | None) -> list[Pair]:
    """The env x algorithm pairs the ``-f`` filter selects, of those the tier checks (:func:`in_function_sample`;
    a pair named whole, ``-f Ant/sbx_sac``, always); a UserError when it selects none (checked before the tier
    makes its output folder)."""
    selected = [(e, a) for e in available("env") for a in available("algorithm")
                if matches(f"{e}/{a}", pattern) and (in_function_sample(e, a) or f"{e}/{a}".lower() == str(pattern).lower())]
    if not selected:
        raise UserError(f"no env x algorithm pair matches -f {pattern!r}; pairs are named <Env>/<algo>, e.g. CartPole/ppo")
    return selected


def function_jobs(out: Path, selected: list[Pair], say=print, keep_runs: bool = False, workers: int = 1,
                  overrides: tuple[str, ...] = (), refusals: Path = REFUSALS_FILE, cover: bool = False
                  ) -> tuple[list[MatrixJob], list[str], dict[Pair, PairCheck]]:
    """One job per pair of ``selected`` (:func:`select_pairs`) the agent factory builds, or with ``cover`` per pair
    of their :func:`covering` set (its run dir is deleted once it passes unless ``keep_runs``), the problems
    :func:`pair_problems` finds against the expected refusals in ``refusals`` (every selected pair is checked either
    way), and every check. ``workers``: processes that check the pairs; ``overrides``: added to every pair's config
    (after its fast overrides)."""
    expected = ExpectedRefusals.load(refusals)
    checks = check_pairs(selected, workers, overrides)
    problems = pair_problems(checks, expected)
    valid = [pair for pair, check in checks.items() if check.outcome == VALID]
    refused = sum(check.outcome == REFUSED for check in checks.values())
    say(f"function tier: {len(checks)} env x algorithm pair(s) checked at the agent factory: {len(valid)} built, "
        f"{refused} refused (expected: {refusals}), {len(problems)} problem(s)")
    for line in problems:
        say(f"FAIL {line}")
    if cover:
        trained = covering(valid)
        say(f"covering set (-c): {len(trained)} of the {len(valid)} built pairs train: each algorithm on one env of each "
            f"kind it acts in, each env at least once")
        valid = trained
    jobs = []
    for env_name, algorithm in valid:
        fast = [f"algorithm.learning_starts={FUNCTION_LEARNING_STARTS}" if o.startswith("algorithm.learning_starts=") else o
                for o in pair_fast_overrides(env_name, algorithm)]
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
    algorithm: str | None = None  # the algorithm config, when the file names a variant (FetchReach/hac_1layer.yaml: hac)
    # What the runs need made first (an offline agent's dataset): {creates: <path under the project>, commands:
    # [<experiment script> <args>, ...]}, run in order from the project root until they have all succeeded once; a command
    # given as {creates: <path>, command: <script> <args>} is skipped when its own ``creates`` exists (a step that a
    # run of the bar, or of another bar, already made).
    prepare: dict[str, Any] | None = None

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
        env, stem = self.name.split("/")
        return env, self.algorithm or stem

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
    be built}: what a bar's runs need is made first (:func:`prepare_bar`), then each bar's pair is built at the agent
    factory with the bar's settings (only its replay buffer shrunk); a bar whose preparation fails, or whose pair
    is refused or fails, gets no runs and fails (:func:`bar_verdicts`)."""
    cannot_build = {bar.name: why for bar in bars if (why := prepare_bar(bar, out, say))}
    ready = [bar for bar in bars if bar.name not in cannot_build]
    groups = []
    for bar in ready:
        env_name, algorithm = bar.pair
        shrink = tuple(o for o in algorithm_fast_overrides(algorithm) if o.startswith("algorithm.buffer_size="))
        groups.append((env_name, [(algorithm, (*bar.settings(1), *overrides, *shrink))]))
    checks = check_groups(groups, workers)
    cannot_build |= {bar.name: f"{checks[bar.pair].outcome}: {checks[bar.pair].reason}" for bar in ready
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


def prepare_bar(bar: Bar, out: Path, say=print) -> str | None:
    """Make what ``bar.prepare`` says its runs need, unless an earlier preparation finished; None when ready, else
    why not (the failed command and its log, ``<out>/logs/<bar>_prepare.log``). A preparation that finished leaves
    ``<creates>.prepared`` beside what it made: a ``creates`` without it (a collection stopped half-way) is made again."""
    if not bar.prepare:
        return None
    target = PROJECT_ROOT / bar.prepare["creates"]
    made_all = Path(f"{target}.prepared")
    if made_all.exists():
        return None
    if target.exists():
        say(f"{bar.name}: {bar.prepare['creates']} exists, but its preparation never finished: it is made again")
    log = out / "logs" / f"{bar.name.replace('/', '_')}_prepare.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for step in bar.prepare["commands"]:
        command, made = (step, None) if isinstance(step, str) else (step["command"], step.get("creates"))
        if made and (PROJECT_ROOT / made).exists():
            say(f"{bar.name}: preparing {bar.prepare['creates']}: {made} exists, so this step is skipped: {command}")
            continue
        say(f"{bar.name}: preparing {bar.prepare['creates']}: {command}")
        script, *args = shlex.split(command)
        with log.open("a") as sink:
            done = subprocess.run([sys.executable, str(PROJECT_ROOT / script), *args], cwd=PROJECT_ROOT, stdout=sink,
                                  stderr=subprocess.STDOUT)
        if done.returncode != 0:
            return f"preparing its runs failed: {command} exited {done.returncode} (see {log})"
    write_atomic(made_all, yaml.safe_dump(bar.prepare, sort_keys=False))
    return None


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
