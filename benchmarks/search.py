"""Benchmarks of the rl_optuna sweeper (real trials through experiment/train.py).

utilization: a 12-trial Pendulum/sac search on 2 workers whose trials differ in length
  (trainer.eval_after_n_steps searched over 200..1600), asynchronous vs. batch barrier; prints busy
  worker-seconds / available worker-seconds for each.
steps-to-target: FetchReach/sac_her searches, early stop + 1.5x epoch cap + median pruning vs. all
  three off, same sampler seed, for several seeds; prints the env steps spent (trials in order of
  completion) until a trial first scores >= the target, and the steps of the whole search.
backends: the FetchReach/sac_her search preset on torch and on JAX (algorithm=sbx_sac_her), same sampler seed, the
  JAX compilation cache emptied first; prints the seconds from the command until a trial first scores >= the target,
  and the seconds of the whole search.

    python benchmarks/search.py utilization
    python benchmarks/search.py steps-to-target --seeds 0 1 2 --trials 8
    python benchmarks/search.py backends --seeds 0 --trials 16
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from hydrarl.paths import TRAIN_SCRIPT
from hydrarl.training.backends import JAX_CACHE_DIR

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search(sweep_dir: Path, overrides: list[str]) -> dict:
    start = time.time()
    cmd = [sys.executable, str(TRAIN_SCRIPT), "--multirun", f"hydra.sweep.dir={sweep_dir}",
           f"logger.mlflow.tracking_uri=sqlite:///{sweep_dir.parent}/mlflow.db", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"search failed with exit status {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    results["wall_seconds"] = time.time() - start
    results["started"] = start
    return results


def utilization(out: Path, trials: int, modes: list[str]) -> None:
    common = ["+search=Pendulum/sac", f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner.name=none",
              "trainer.n_epochs=2", "trainer.n_test_rollouts=2", "trainer.early_stop.threshold=null",
              "trainer.eval_after_n_steps=choice(200,400,800,1600)"]
    print("| mode | trials | worker utilization | wall (s) |\n|---|---|---|---|")
    for name, extra in (("asynchronous (default)", []), ("batch barrier", ["hydra.sweeper.asynchronous=false"])):
        if name.split()[0] not in modes:
            continue
        r = search(out / name.split()[0], [*common, *extra, "hydra.sweeper.sampler.seed=0"])
        print(f"| {name} | {sum(r['trials'].values())} | {100 * r['worker_utilization']:.1f} % | {r['wall_seconds']:.0f} |", flush=True)


def steps_to_target(study_dir: Path, target: float) -> tuple[int | None, int]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(study_dir / "optuna_journal.log")))
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    finished = sorted((t for t in study.trials if t.state.is_finished()), key=lambda t: t.datetime_complete)
    spent, first = 0, None
    for t in finished:
        spent += t.user_attrs.get("num_timesteps", 0)
        if first is None and t.state == TrialState.COMPLETE and t.value >= target:
            first = spent
    return first, spent


def budget(out: Path, seeds: list[int], trials: int, target: float) -> None:
    common = ["+search=FetchReach/sac_her", f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.n_jobs=2",
              "trainer.eval_after_n_steps=500", "trainer.n_epochs=12", "trainer.n_test_rollouts=5"]
    off = ["trainer.early_stop.threshold=null", "hydra.sweeper.epoch_cap_factor=null", "hydra.sweeper.pruner.name=none"]
    print("| sampler seed | setting | env steps to first score >= target | env steps, whole search | pruned | wall (s) |")
    print("|---|---|---|---|---|---|")
    for seed in seeds:
        for name, extra in (("early stop + 1.5x cap + pruning", []), ("all three off", off)):
            d = out / f"{seed}-{'on' if not extra else 'off'}"
            r = search(d, [*common, *extra, f"hydra.sweeper.sampler.seed={seed}"])
            first, total = steps_to_target(d, target)
            print(f"| {seed} | {name} | {first} | {total} | {r['trials'].get('PRUNED', 0)} | {r['wall_seconds']:.0f} |", flush=True)


def seconds_to_target(study_dir: Path, target: float, started: float) -> float | None:
    """Seconds from ``started`` (the command) until the first trial that completed with a score >= ``target``."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(study_dir / "optuna_journal.log")))
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    reached = [t.datetime_complete.timestamp() for t in study.trials if t.state == TrialState.COMPLETE and t.value >= target]
    return min(reached) - started if reached else None


def backends(out: Path, seeds: list[int], trials: int, target: float) -> None:
    common = ["+search=FetchReach/sac_her", f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.n_jobs=2"]
    print("| sampler seed | backend | seconds to the first trial scoring >= target | seconds, whole search | completed | pruned |")
    print("|---|---|---|---|---|---|")
    for seed in seeds:
        for name, extra in (("torch", []), ("JAX", ["algorithm=sbx_sac_her"])):
            if extra:
                shutil.rmtree(JAX_CACHE_DIR, ignore_errors=True)
            d = out / f"{seed}-{name}"
            r = search(d, [*common, *extra, f"hydra.sweeper.sampler.seed={seed}"])
            first = seconds_to_target(d, target, r["started"])
            print(f"| {seed} | {name} | {'-' if first is None else f'{first:.0f}'} | {r['wall_seconds']:.0f} | "
                  f"{r['trials'].get('COMPLETE', 0)} | {r['trials'].get('PRUNED', 0)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["utilization", "steps-to-target", "backends"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--modes", nargs="+", default=["asynchronous", "batch"], help="utilization: which modes to run")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-search-"))
    print(f"(runs in {out})")
    if args.what == "utilization":
        utilization(out, args.trials or 12, args.modes)
    elif args.what == "backends":
        backends(out, args.seeds, args.trials or 16, args.target)
    else:
        budget(out, args.seeds, args.trials or 8, args.target)


if __name__ == "__main__":
    main()
