"""The fault campaign: real processes, real SIGKILLs at random (seeded) moments, a real full disk.

Scenarios (each try is independent; a try "holds" when every check of the scenario passes):

kill-run       a Pendulum/sac run is SIGKILLed at a random moment after its first checkpoint; the same
               run is resumed with trainer.resume=<run dir>; it must end (exit 0) with the env steps,
               epochs and gradient steps of an unkilled run with the same seed, in one MLflow run
               (FINISHED, no run left RUNNING), with each epoch's evaluation logged once per step.
kill-search    a 4-trial Pendulum/sac search on 2 workers: the sweeper process alone is SIGKILLed at a
               random moment (as the OOM killer or `kill -9 <pid>` would); within 20 s no process of
               that search may be left (no orphan trial); then the same command is run again: it must
               end (exit 0) with 4 COMPLETE trials, every trial that had completed before the kill kept
               (same number, parameters, value), no parameter set completed twice, and no MLflow run
               left RUNNING.
full-disk      a run on a small tmpfs (root only): 2 epochs, then the disk is shrunk to just above what
               is used and the run is resumed for 4 epochs: its next checkpoint cannot be written, so
               the run must end with a non-zero exit, its MLflow run FAILED, and checkpoints/last still
               the intact epoch-2 checkpoint; then the disk grows back and a second resume must finish
               with the counters of an unkilled run.
same-second    4 runs started at once with the default run directory, runs/Pendulum/sac/<date>_<time>
               (as root, the project's runs/ is a bind mount of the try's folder in a private mount
               namespace; otherwise hydra.run.dir=<try>/runs/Pendulum/sac/${now:...}, the default's
               pattern): each must end (exit 0) in its own directory holding its own config (its seed),
               with its own MLflow run.

    .venv/bin/python benchmarks/fault_campaign.py                       # everything, 10 tries of the kill scenarios
    .venv/bin/python benchmarks/fault_campaign.py --only kill-run --repeats 3 --seed 1
    .venv/bin/python benchmarks/fault_campaign.py --keep /tmp/campaign  # keep every try's folders

Prints one line per try, then a table (scenario, tries, held, failures with detail); exit status 1 if
any try failed. The bad-input half of the campaign is the test table tests/faults/cases.py
(pytest tests/faults). Results and how to recover from each fault: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fault_processes import PROJECT_ROOT, counters, group_processes, mlflow_runs, say, start, tail, train, wait_for

# A small, fast, seeded run: 4 epochs x 200 env steps of SAC on Pendulum (~10-20 s on a loaded core).
RUN = ["env=Pendulum", "algorithm=sac", "seed=5", "trainer.n_epochs=4", "trainer.eval_after_n_steps=200",
       "trainer.n_test_rollouts=1", "trainer.progress_bar=false", "trainer.checkpoint_every=0",
       "algorithm.learning_starts=50", "algorithm.batch_size=32", "algorithm.buffer_size=2000",
       "algorithm.policy_kwargs.net_arch=[32,32]"]
SEARCH = ["--multirun", "+search=Pendulum/sac", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
          "hydra.sweeper.sampler.seed=0", "trainer.n_epochs=2", "trainer.eval_after_n_steps=200", "trainer.n_test_rollouts=1",
          "trainer.progress_bar=false", "algorithm.learning_starts=50", "algorithm.batch_size=32", "algorithm.buffer_size=2000",
          "algorithm.policy_kwargs.net_arch=choice([16],[32])"]
STUDY = "Pendulum-sac"


@dataclass
class Outcome:
    scenario: str
    tries: int = 0
    held: int = 0
    failures: list[str] = field(default_factory=list)
    missed: int = 0          # tries whose process ended before the kill landed: drawn again, not counted


NO_KILL = "the process ended before the kill landed"  # a kill scenario's answer when it killed nothing


# -- scenarios -----------------------------------------------------------------------------------------

def reference(work: Path) -> dict:
    """The unkilled run every resumed one is compared with (and its timing, for the kill moments)."""
    ref_dir, store = work / "reference", f"sqlite:///{work}/reference.db"
    shutil.rmtree(ref_dir, ignore_errors=True)
    ref_dir.mkdir(parents=True)
    begun = time.time()
    proc = start([*RUN, f"hydra.run.dir={ref_dir / 'run'}"], store, ref_dir / "train.out")
    wait_for(lambda: (ref_dir / "run" / "checkpoints" / "last" / "trainer_state.json").exists(), 600, proc)
    first_checkpoint = time.time() - begun
    code = proc.wait()
    proc.log_file.close()
    if code != 0:
        raise SystemExit(f"the reference run failed (exit {code}): {tail(ref_dir / 'train.out')}")
    result = counters(ref_dir / "run")
    result.update(seconds=time.time() - begun, first_checkpoint=first_checkpoint)
    say(f"reference run: {result['epoch']} epochs, {result['num_timesteps']} env steps, {result['gradient_steps']} gradient steps, "
        f"{result['seconds']:.0f} s (first checkpoint at {first_checkpoint:.0f} s)")
    return result


def kill_run(work: Path, rng: random.Random, ref: dict) -> str | None:
    store = f"sqlite:///{work}/mlflow.db"
    run_dir = work / "run"
    proc = start([*RUN, f"hydra.run.dir={run_dir}"], store, work / "train.out")
    if not wait_for(lambda: (run_dir / "checkpoints" / "last" / "trainer_state.json").exists(), 600, proc):
        proc.kill()
        return f"no first checkpoint (exit {proc.poll()}): {tail(work / 'train.out')}"
    # the reference's remaining time includes the end of the process (artifacts, MLflow): kill well before it
    delay = rng.uniform(0, max(0.5, 0.45 * (ref["seconds"] - ref["first_checkpoint"])))
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.log_file.close()
    state = json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())
    say(f"    {'killed' if killed else 'finished before the kill'} {delay:.1f} s after the first checkpoint, at epoch {state['epoch']}")
    if not killed:
        return NO_KILL
    resumed = train([f"trainer.resume={run_dir}"], store, work / "resume.out")
    if resumed.returncode != 0:
        return f"resume exited {resumed.returncode}: {tail(work / 'resume.out')}"
    got = counters(run_dir)
    wrong = [f"{k} {got[k]} != {ref[k]}" for k in ("num_timesteps", "epoch", "gradient_steps") if got[k] != ref[k]]
    if wrong:
        return "resumed run differs from an unkilled one: " + ", ".join(wrong)
    runs = mlflow_runs(store)
    if [s for _, s, _ in runs] != ["FINISHED"]:
        return f"MLflow runs after the resume: {[s for _, s, _ in runs]} (want one FINISHED)"
    with sqlite3.connect(store.removeprefix("sqlite:///")) as con:
        steps = [s for (s,) in con.execute("select step from metrics where key = 'eval/mean_reward' order by step")]
    if sorted(set(steps)) != [200 * (i + 1) for i in range(ref["epoch"])]:
        return f"eval/mean_reward steps {steps}"
    return None


def _study(sweep_dir: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = sweep_dir / "optuna_journal.log"
    if not journal.exists():
        return None
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    try:
        return optuna.load_study(study_name=STUDY, storage=storage)
    except KeyError:
        return None


def _complete(study) -> dict[int, tuple[str, float]]:
    from optuna.trial import TrialState

    if study is None:
        return {}
    return {t.number: (json.dumps(t.params, sort_keys=True), t.value) for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE}


def kill_search(work: Path, rng: random.Random, ref: dict) -> str | None:
    store, sweep_dir = f"sqlite:///{work}/mlflow.db", work / "search"
    args = [*SEARCH, f"hydra.sweep.dir={sweep_dir}"]
    begun = time.time()
    proc = start(args, store, work / "search.out")
    if not wait_for(lambda: (sweep_dir / "trial_0000").exists(), 600, proc):
        proc.kill()
        return f"no trial started (exit {proc.poll()}): {tail(work / 'search.out')}"
    started = time.time() - begun
    delay = rng.uniform(0, max(1.0, 0.8 * (ref.get("search_seconds", 60) - started)))
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)  # the sweeper alone: its trials must not outlive it
    proc.wait()
    proc.log_file.close()
    before = _complete(_study(sweep_dir))
    say(f"    {'sweeper killed' if killed else 'search finished before the kill'} {started + delay:.1f} s in, "
        f"{len(before)} trial(s) complete")
    if not killed:
        return NO_KILL
    orphans = [] if wait_for(lambda: not group_processes(str(sweep_dir)), 20) else group_processes(str(sweep_dir))
    for line in orphans:
        try:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    if orphans:
        return f"{len(orphans)} orphan process(es) 20 s after the sweeper died: {orphans[0]}"
    again = train(args, store, work / "rerun.out")
    if again.returncode != 0:
        return f"the re-run exited {again.returncode}: {tail(work / 'rerun.out')}"
    after = _complete(_study(sweep_dir))
    lost = [n for n, v in before.items() if after.get(n) != v]
    if lost:
        return f"finished trial(s) {lost} lost or changed by the re-run"
    if len(after) != 4:
        return f"{len(after)} COMPLETE trials after the re-run, want 4"
    params = [p for p, _ in after.values()]
    if len(params) != len(set(params)):
        return f"a configuration completed twice: {sorted(params)}"
    running = [r for r in mlflow_runs(store) if r[1] == "RUNNING"]
    if running:
        return f"{len(running)} MLflow run(s) left RUNNING after the re-run: {running[0][2]}"
    return None


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def full_disk(work: Path, rng: random.Random, ref: dict) -> str | None:
    disk, store = work / "disk", f"sqlite:///{work}/mlflow.db"  # the store is on a normal disk: only the run's folder fills up
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=65536k", "tmpfs", str(disk))
    try:
        run_dir = disk / "run"
        first = train([*RUN, "trainer.n_epochs=2", f"hydra.run.dir={run_dir}"], store, work / "first.out")
        if first.returncode != 0:
            return f"the first 2 epochs exited {first.returncode}: {tail(work / 'first.out')}"
        intact = counters(run_dir)
        used_kib = shutil.disk_usage(disk).used // 1024
        _mount("-o", f"remount,size={used_kib + 48}k", str(disk))  # less than one more checkpoint
        full = train([f"trainer.resume={run_dir}", "trainer.n_epochs=4"], store, work / "full.out")
        problems = []
        if full.returncode <= 0:  # a failed run ends with a non-zero status of its own, not by a signal
            problems.append(f"the run on a full disk exited {full.returncode}")
        _mount("-o", "remount,size=65536k", str(disk))
        try:
            now = counters(run_dir)
            if (now["epoch"], now["num_timesteps"]) < (intact["epoch"], intact["num_timesteps"]):
                problems.append(f"checkpoints/last went back: epoch {now['epoch']} < {intact['epoch']}")
        except Exception as exc:  # noqa: BLE001 - any failure to read it means it was damaged
            problems.append(f"checkpoints/last unreadable after the full disk: {type(exc).__name__}: {str(exc)[:150]}")
        statuses = [s for _, s, _ in mlflow_runs(store)]
        if statuses != ["FAILED"]:
            problems.append(f"MLflow run status after the full disk {statuses}, want ['FAILED']")
        again = train([f"trainer.resume={run_dir}", "trainer.n_epochs=4"], store, work / "again.out")
        if again.returncode != 0:
            problems.append(f"the resume once space returned exited {again.returncode}: {tail(work / 'again.out')}")
        else:
            got = counters(run_dir)
            wrong = [f"{k} {got[k]} != {ref[k]}" for k in ("num_timesteps", "epoch", "gradient_steps") if got[k] != ref[k]]
            if wrong:
                problems.append("after the resume: " + ", ".join(wrong))
            statuses = [s for _, s, _ in mlflow_runs(store)]
            if statuses != ["FINISHED"]:
                problems.append(f"MLflow run status after the resume {statuses}, want ['FINISHED']")
        return "; ".join(problems) or None
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def same_second(work: Path, rng: random.Random, ref: dict, copies: int = 4) -> str | None:
    store = f"sqlite:///{work}/mlflow.db"
    (work / "runs").mkdir()
    if os.geteuid() == 0:  # the default run directory, <project>/runs/..., with a folder of this try's mounted there
        (PROJECT_ROOT / "runs").mkdir(exist_ok=True)
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"',
                str(work / "runs"), str(PROJECT_ROOT / "runs")]
        extra = []
    else:  # the default's pattern under this try's folder
        wrap, extra = [], [f"hydra.run.dir={work}/runs/Pendulum/sac/${{now:%Y-%m-%d_%H-%M-%S}}"]
    procs = [start([*RUN, "trainer.n_epochs=1", f"seed={i}", *extra], store, work / f"run{i}.out", wrap) for i in range(copies)]
    codes = [p.wait() for p in procs]
    for p in procs:
        p.log_file.close()
    if any(codes):
        return f"exit statuses {codes}: {tail(work / f'run{next(i for i, c in enumerate(codes) if c)}.out')}"
    dirs = sorted(p for p in (work / "runs" / "Pendulum" / "sac").iterdir() if p.is_dir())
    if len(dirs) != copies:
        return f"{copies} runs made {len(dirs)} run directories: {[d.name for d in dirs]}"
    import yaml

    seeds = sorted(yaml.safe_load((d / "config.yaml").read_text())["seed"] for d in dirs)
    if seeds != list(range(copies)):
        return f"the directories hold the configs of seeds {seeds}, want one each of {list(range(copies))}"
    tags = sorted(t for _, _, t in mlflow_runs(store))
    if len(set(tags)) != copies:
        return f"MLflow runs' run_dir tags {tags}: not one per directory"
    seconds = [d.name[:19] for d in dirs]
    say(f"    directories: {', '.join(d.name for d in dirs)}"
        + ("" if len(set(seconds)) < len(seconds) else " (no two in the same second this time)"))
    return None


SCENARIOS: dict[str, Callable[[Path, random.Random, dict], str | None]] = {
    "kill-run": kill_run, "kill-search": kill_search, "full-disk": full_disk, "same-second": same_second}
ONCE = {"full-disk", "same-second"}  # not randomised: one try each unless --repeats says otherwise for them too


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="run only these scenarios")
    p.add_argument("--repeats", type=int, default=10, help="tries of each kill scenario (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seeds the kill moments (default 0)")
    p.add_argument("--keep", type=Path, default=None, help="keep every try's folder here (default: a temporary folder, removed)")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    chosen = args.only or list(SCENARIOS)
    rng = random.Random(args.seed)
    root = args.keep or Path(tempfile.mkdtemp(prefix="fault-campaign-"))
    root.mkdir(parents=True, exist_ok=True)
    outcomes = []
    try:
        ref = reference(root) if {"kill-run", "full-disk"} & set(chosen) else {}
        if "kill-search" in chosen:
            ref_search = root / "reference-search"
            shutil.rmtree(ref_search, ignore_errors=True)
            ref_search.mkdir()
            begun = time.time()
            done = train([*SEARCH, f"hydra.sweep.dir={ref_search / 'search'}"], f"sqlite:///{ref_search}/mlflow.db", ref_search / "search.out")
            if done.returncode != 0:
                raise SystemExit(f"the reference search failed (exit {done.returncode}): {tail(ref_search / 'search.out')}")
            ref["search_seconds"] = time.time() - begun
            say(f"reference search: 4 trials in {ref['search_seconds']:.0f} s")
        for name in chosen:
            outcome = Outcome(name)
            if name == "full-disk" and os.geteuid() != 0:
                outcome.failures.append("not run: mounting a small tmpfs needs root")
                outcomes.append(outcome)
                continue
            wanted, i = (1 if name in ONCE and not args.only else args.repeats), -1
            while outcome.tries < wanted and i < 3 * wanted:
                i += 1
                work = root / f"{name}-{i:02d}"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                say(f"{name} try {i + 1}: {work}")
                begun = time.time()
                try:
                    failure = SCENARIOS[name](work, rng, ref)
                except Exception as exc:  # noqa: BLE001 - a crash of the campaign's own check is a failed try, reported
                    failure = f"the check itself failed: {type(exc).__name__}: {str(exc)[:300]}"
                if failure == NO_KILL:  # nothing was tested: draw another moment
                    outcome.missed += 1
                    say(f"  not counted: {NO_KILL} ({time.time() - begun:.0f} s)")
                    continue
                outcome.tries += 1
                if failure:
                    outcome.failures.append(f"try {i + 1}: {failure}")
                else:
                    outcome.held += 1
                say(f"  {'held' if not failure else 'FAILED: ' + failure} ({time.time() - begun:.0f} s)")
                if not args.keep and not failure:
                    shutil.rmtree(work, ignore_errors=True)
            outcomes.append(outcome)
    finally:
        if not args.keep and not any(o.failures for o in outcomes):
            shutil.rmtree(root, ignore_errors=True)
    say("\n| scenario | tries | held | not counted (ended before the kill) | failures |\n|---|---|---|---|---|")
    for o in outcomes:
        say(f"| {o.scenario} | {o.tries} | {o.held} | {o.missed} | {'<br>'.join(o.failures) or '-'} |")
    if any(o.failures for o in outcomes):
        say(f"\nFAILED: folders of the failed tries are in {root}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
