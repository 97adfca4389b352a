"""The regression matrix: which jobs each tier runs, and whether they pass.

Function tier: every valid env x algorithm pair of the config tree for one short epoch, then a
save -> load -> predict round trip (both in one process: ``roundtrip --train``). Validity is decided by the same checks a run does (the agent
factory), once, in this process.

Performance tier: the bars in ``conf/performance/<Env>/<algo>.yaml``; each bar runs
``total_runs`` seeds and passes when at least ``succ_runs`` of them pass. A run passes when the
mean of its last ``last_n`` evaluations of ``metric`` is >= ``value`` at or before ``max_steps``
env steps: the early-stop rule of ``hydrarl.training.stopping``, which each run applies itself (its
``trainer.early_stop`` is the bar's) and reports in its TrialResult (``met_at_step``, ``best_mean``);
the run stops once the rule holds, and the remaining runs of a bar are not started once it can no
longer pass.
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
from hydrarl.errors import UserError
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


def _check_env_pairs(env_name: str, algorithms: list[str]) -> tuple[dict, dict]:
    """``valid_pairs`` for one env: one env copy, each algorithm's agent built on it."""
    from hydrarl.agents.factory import build_agent
    from hydrarl.envs.factory import make_vec_env

    valid, refused, env = {}, {}, None
    try:
        for algorithm in algorithms:
            fast = list(algorithm_fast_overrides(algorithm))
            cfg = compose([f"env={env_name}", f"algorithm={algorithm}", *fast])
            try:
                env = env or make_vec_env(cfg.env, 0)
                build_agent(cfg.algorithm, env, 0, "cpu", name=algorithm, env_name=env_name)
                valid[(env_name, algorithm)] = fast
            except UserError as exc:
                refused[(env_name, algorithm)] = str(exc)
    finally:
        if env is not None:
            env.close()
    return valid, refused


def valid_pairs(selected: list[tuple[str, str]], workers: int = 1) -> tuple[dict[tuple[str, str], list[str]], dict[tuple[str, str], str]]:
    """({pair the agent factory accepts: its fast overrides}, {refused pair: reason}). Each agent is built
    with the sizes its job will use: a default replay buffer of images (1e6 x 55 kB) cannot be allocated.
    With ``workers`` > 1 the envs are checked in that many processes at once."""
    by_env: dict[str, list[str]] = {}
    for env_name, algorithm in selected:
        by_env.setdefault(env_name, []).append(algorithm)
    if workers > 1 and len(by_env) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(by_env)), mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_check_env_pairs, by_env, by_env.values()))
    else:
        parts = [_check_env_pairs(env_name, algorithms) for env_name, algorithms in by_env.items()]
    valid, refused = {}, {}
    for part_valid, part_refused in parts:
        valid.update(part_valid)
        refused.update(part_refused)
    order = {pair: i for i, pair in enumerate(selected)}
    return dict(sorted(valid.items(), key=lambda kv: order[kv[0]])), refused


def matches(name: str, pattern: str | None) -> bool:
    """``-f`` filter: a substring of ``<Env>/<algo>`` (case-insensitive)."""
    return not pattern or pattern.lower() in name.lower()


def function_jobs(out: Path, pattern: str | None, say=print, keep_runs: bool = False, workers: int = 1) -> list[MatrixJob]:
    """One job per valid pair; its run dir is deleted once it passes unless ``keep_runs``. ``workers``:
    processes that check the pairs at the agent factory."""
    selected = [(e, a) for e in available("env") for a in available("algorithm") if matches(f"{e}/{a}", pattern)]
    valid, refused = valid_pairs(selected, workers)
    say(f"function tier: {len(valid)} valid env x algorithm pairs ({len(refused)} refused by the agent factory)")
    jobs = []
    for (env_name, algorithm), fast in valid.items():
        fast = [f"algorithm.learning_starts={FUNCTION_LEARNING_STARTS}" if o.startswith("algorithm.learning_starts=") else o
                for o in fast]
        run_dir = out / "runs" / f"{env_name}_{algorithm}"
        train_then_check = [sys.executable, "-m", "hydrarl.launchers.roundtrip", "--train", f"env={env_name}",
                            f"algorithm={algorithm}", *FUNCTION_TRAINER, *fast, f"hydra.run.dir={run_dir}"]
        jobs.append(MatrixJob(f"{env_name}/{algorithm}", train_then_check, out / "logs" / f"{env_name}_{algorithm}.log",
                              run_dir=run_dir, scratch=None if keep_runs else run_dir))
    return jobs


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

    def run_overrides(self, seed: int) -> list[str]:
        env, algorithm = self.name.split("/")
        epochs = math.ceil(self.max_steps / self.eval_after_n_steps)
        return [f"env={env}", f"algorithm={algorithm}", f"seed={seed}", f"trainer.n_epochs={epochs}",
                f"trainer.eval_after_n_steps={self.eval_after_n_steps}", f"trainer.n_test_rollouts={self.n_test_rollouts}",
                f"trainer.metric={self.metric}", f"trainer.early_stop.threshold={self.value}",
                f"trainer.early_stop.last_n={self.last_n}", "trainer.progress_bar=false", *self.overrides]


def load_bars(pattern: str | None, root: Path = BARS_DIR) -> list[Bar]:
    return [Bar.load(root / f"{name}.yaml", root) for name in available("performance", root) if matches(name, pattern)]


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


def performance_jobs(out: Path, pattern: str | None, say=print, root: Path = BARS_DIR) -> tuple[list[MatrixJob], list[Bar]]:
    bars = load_bars(pattern, root)
    if not bars:
        raise UserError(f"no performance bar matches -f {pattern!r}; bars: {', '.join(available('performance', root))}")
    jobs = []
    for bar in bars:
        for seed in range(1, bar.total_runs + 1):
            run_dir = out / "runs" / f"{bar.name.replace('/', '_')}_seed{seed}"
            cmd = train_command([*bar.run_overrides(seed), f"hydra.run.dir={run_dir}"])
            jobs.append(MatrixJob(f"{bar.name}#seed{seed}", cmd, out / "logs" / f"{bar.name.replace('/', '_')}_seed{seed}.log",
                                  meta={"bar": bar.name, "seed": seed}, run_dir=run_dir))
    say(f"performance tier: {len(bars)} bar(s), {len(jobs)} run(s)")
    return jobs, bars


def bar_verdicts(jobs: list[MatrixJob], bars: list[Bar]) -> list[dict[str, Any]]:
    """One verdict per bar from its runs' TrialResults."""
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
                         "passed": passed >= bar.succ_runs, "value_needed": bar.value, "best_value_reached": best, "runs": runs})
    return verdicts


def hopeless(bar: Bar, jobs: list[MatrixJob]) -> bool:
    """True once so many runs of ``bar`` failed that ``succ_runs`` can no longer be reached."""
    mine = [j for j in jobs if j.meta.get("bar") == bar.name]
    finished = [j for j in mine if j.returncode is not None]
    failed = 0
    for job in finished:
        failed += not (job.ok and run_verdict(job.result, bar)["passed"])
    return len(mine) - failed < bar.succ_runs
