"""How one PostgreSQL study holds up under many sweeper processes (docs/scaling.md).

For each worker count (default 1, 4, 16, 64) a fresh database on one PostgreSQL server (started here, 127.0.0.1)
gets one study; that many sweeper processes start at once, each the real ``SweepRunner`` (heartbeats, shared
``n_trials``, surplus and retry rules) with one worker and a synthetic trial (``--trial-seconds`` of sleep, an
intermediate value reported each of 3 epochs, as a training run reports). Measured: trials per second of the whole
study, the sampler's time per trial (``ask`` to the trial's start, in each process), duplicate trial numbers, lost
trials (asked for but never ended), failed trials and why, surplus trials, the largest number of database connections seen, and the
wall time. ``--trials-per-worker`` sets n_trials = workers x that.

The MLflow part (``--mlflow-clients``, default 1 and 8): an MLflow tracking server (one uvicorn worker) on a
database of the same PostgreSQL server; each client process starts a run and sends ``--batches`` metric batches
of 10 metrics (what a Trainer sends each epoch), then ends it. Measured: requests per second the server answered,
and the median and 90th percentile time of one batch.

    python benchmarks/shared_study.py                        # 1, 4, 16, 64 workers; 1 and 8 MLflow clients
    python benchmarks/shared_study.py --workers 4 --trial-seconds 1 --mlflow-clients 4
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.helpers: the PostgreSQL server and the synthetic trial

STUDY = "scale"
LOGS = ROOT / "runs" / "bench" / "shared_study"  # the output of workers that failed
STALE = "no heartbeat within the grace period: failed by another sweeper, which ran it again"


def worker(args: argparse.Namespace) -> None:
    """One sweeper process: run the shared study to its end; print its ask times as JSON."""
    import optuna

    from hydrarl.sweep import shared
    from hydrarl.sweep.runner import SweepRunner
    from hydrarl.sweep.settings import RLOptunaSweeperConf
    from tests.helpers.sweep_objective import synthetic

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    asks: list[float] = []
    ask = shared.ask

    def timed_ask(study, distributions):
        start = time.perf_counter()
        try:
            return ask(study, distributions)
        finally:
            asks.append(time.perf_counter() - start)

    shared.ask = timed_ask  # the runner asks through shared.ask: time each call, nothing else changes
    settings = RLOptunaSweeperConf(storage=args.storage, n_trials=args.n_trials, n_jobs=1, params={"x": "interval(0,1)"},
                                   sampler={"name": "tpe", "seed": None}, heartbeat_seconds=5)
    def trial(job):
        outcome = synthetic(job, duration=args.trial_seconds)
        gc.collect()  # the trial's reporter (its own storage, as a train.py process has) closes its connections
        return outcome

    runner = SweepRunner(settings, trial, sweep_dir=Path(args.sweep_dir), study_name=STUDY, n_epochs=3)
    runner.run()
    print(json.dumps({"asks": asks}))


def mlflow_client(args: argparse.Namespace) -> None:
    """One MLflow client process: a run in experiment ``scale`` (made by the caller), ``--batches`` batches."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.tracking_uri)
    run = client.create_run(client.get_experiment_by_name("scale").experiment_id)
    times = []
    for step in range(args.batches):
        start = time.perf_counter()
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id, metrics=[Metric(f"m{i}", float(step), now, step) for i in range(10)])
        times.append(time.perf_counter() - start)
    client.set_terminated(run.info.run_id)
    print(json.dumps({"times": times}))


def measure_mlflow(server: str, n_clients: int, args: argparse.Namespace, work: Path) -> dict:
    from mlflow.tracking import MlflowClient

    from tests.helpers.servers import create_database, mlflow_server

    with mlflow_server(work / f"mlflow{n_clients}", create_database(server, f"mlflow{n_clients}")) as uri:
        MlflowClient(tracking_uri=uri).create_experiment("scale")  # once, before the clients fan out
        start = time.time()
        procs = [subprocess.Popen([sys.executable, __file__, "--mlflow-client", "--tracking-uri", uri, "--batches",
                                   str(args.batches)], stdout=subprocess.PIPE, text=True) for _ in range(n_clients)]
        outputs = [p.communicate()[0] for p in procs]
        wall = time.time() - start
    times = sorted(t for out in outputs if out.strip() for t in json.loads(out.strip().splitlines()[-1])["times"])
    requests = n_clients * (args.batches + 2)
    return {"clients": n_clients, "batches": len(times), "failed": sum(p.returncode != 0 for p in procs),
            "requests_per_s": requests / wall, "median_ms": 1000 * statistics.median(times),
            "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))]}


def connections(url: str, database: str, stop: threading.Event, seen: list[int]) -> None:
    """Sample the server's connections to ``database`` every 0.2 s into ``seen``."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")  # a fresh snapshot each query
    query = sqlalchemy.text("select count(*) from pg_stat_activity where datname = :d")
    with engine.connect() as conn:
        while not stop.wait(0.2):
            seen.append(int(conn.execute(query, {"d": database}).scalar()))
    engine.dispose()


def measure(server: str, n_workers: int, args: argparse.Namespace, work: Path) -> dict:
    import optuna
    from optuna.trial import TrialState

    from hydrarl.sweep.shared import SURPLUS
    from tests.helpers.servers import create_database

    database = f"w{n_workers}"
    storage = create_database(server, database)
    n_trials = n_workers * args.trials_per_worker
    seen: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=connections, args=(server, database, stop, seen))
    sampler.start()
    start = time.time()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--storage", storage, "--n-trials", str(n_trials),
                               "--trial-seconds", str(args.trial_seconds), "--sweep-dir", str(work / database / f"p{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n_workers)]
    outputs = [p.communicate() for p in procs]
    wall = time.time() - start
    stop.set()
    sampler.join()
    broken = []
    for i, ((_, err), p) in enumerate(zip(outputs, procs, strict=True)):
        if p.returncode != 0:
            LOGS.mkdir(parents=True, exist_ok=True)
            (LOGS / f"{database}_p{i}.stderr").write_text(err)
            broken.append(f"exit {p.returncode}: {err.strip().splitlines()[-1][:300] if err.strip() else ''}")
    asks = [a for out, _ in outputs if out.strip() for a in json.loads(out.strip().splitlines()[-1])["asks"]]
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    numbers = [t.number for t in trials]
    run = [t for t in trials if t.user_attrs.get("stop_reason") != SURPLUS]
    ended = [t for t in run if t.state == TrialState.COMPLETE or t.state == TrialState.PRUNED]
    failed = [t for t in run if t.state == TrialState.FAIL]
    first = min(t.datetime_start for t in run).timestamp()
    last = max(t.datetime_complete for t in ended).timestamp()
    reasons = sorted({str(t.user_attrs.get("error", STALE)).strip().splitlines()[-1][:200] for t in failed})
    return {"workers": n_workers, "n_trials": n_trials, "ended": len(ended), "failed": len(failed), "reasons": reasons,
            "lost": len(run) - len(ended) - len(failed),
            "duplicates": len(numbers) - len(set(numbers)), "surplus": len(trials) - len(run),
            "trials_per_s": len(ended) / (last - first), "ask_median_ms": 1000 * statistics.median(asks),
            "ask_p90_ms": 1000 * sorted(asks)[int(0.9 * (len(asks) - 1))], "max_connections": max(seen or [0]),
            "wall_s": wall, "failed_workers": broken}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 4, 16, 64])
    parser.add_argument("--trials-per-worker", type=int, default=4)
    parser.add_argument("--trial-seconds", type=float, default=2.0)
    parser.add_argument("--mlflow-clients", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mlflow-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--n-trials", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sweep-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.mlflow_client:
        mlflow_client(args)
        return
    from tests.helpers.servers import postgres_server

    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tmp)) as server:
        if args.workers:
            print("| workers | n_trials | completed | failed (then retried) | lost | duplicates | surplus | trials/s | ask median ms | ask p90 ms | "
                  "max DB connections | wall s |\n|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
        for n in args.workers:
            r = measure(server, n, args, Path(tmp))
            print(f"| {r['workers']} | {r['n_trials']} | {r['ended']} | {r['failed']} | {r['lost']} | {r['duplicates']} | {r['surplus']} | "
                  f"{r['trials_per_s']:.2f} | {r['ask_median_ms']:.0f} | {r['ask_p90_ms']:.0f} | {r['max_connections']} | "
                  f"{r['wall_s']:.0f} |", flush=True)
            for reason in r["reasons"]:
                print(f"  a trial failed: {reason}", flush=True)
            for failure in r["failed_workers"]:
                print(f"  a worker failed: {failure}", flush=True)
        if args.mlflow_clients:
            print("\n| MLflow clients | batches | failed clients | requests/s | batch median ms | batch p90 ms |\n"
                  "|---|---|---|---|---|---|", flush=True)
        for n in args.mlflow_clients:
            r = measure_mlflow(server, n, args, Path(tmp))
            print(f"| {r['clients']} | {r['batches']} | {r['failed']} | {r['requests_per_s']:.0f} | {r['median_ms']:.1f} | "
                  f"{r['p90_ms']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
