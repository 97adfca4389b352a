"""Read runs back from an MLflow store: pick runs by experiment, env, algorithm, tags, ids and status,
and read one metric's history.

Shared by ``experiment/plot.py`` and other scripts that read finished runs (an exporter to another
tracker, a table of results): ``add_selection_arguments`` gives them the same command-line options,
``select_from_args`` the same selection and the same error messages.

Our runs carry the tags ``env``, ``algorithm`` and ``seed`` (see ``hydrarl.training.train``), live in
one experiment per env, and log metrics with ``step`` = env steps. Selection is exact string equality
on tag values. A bad selection raises :class:`hydrarl.errors.UserError` saying what was asked and
what the store holds.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hydrarl.errors import UserError
from hydrarl.paths import default_tracking_uri
from hydrarl.status import Status

if TYPE_CHECKING:  # mlflow is imported when a store is opened, so bad options are answered at once
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

# MLflow's run statuses: our runs' end statuses (Status.mlflow) and those of runs not ended yet.
STATUSES = ("RUNNING", "SCHEDULED", *dict.fromkeys(s.mlflow for s in Status))
# Completed, early-stopped and pruned runs end FINISHED; KILLED runs were interrupted (Ctrl-C) and are
# resumable: both hold curves worth drawing. RUNNING ones are incomplete, FAILED ones crashed.
DEFAULT_STATUSES = tuple(dict.fromkeys(s.mlflow for s in Status if s is not Status.FAILED))
_PAGE = 1000


def open_client(tracking_uri: str) -> MlflowClient:
    """A client on an existing store. A missing sqlite file or store folder is an error here, not a
    new empty store (MLflow would create one silently and then find no runs)."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
    elif "://" not in tracking_uri or tracking_uri.startswith("file:"):
        path = Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
    else:
        path = None
    if path is not None and not path.exists():
        raise UserError(f"no MLflow store at {path} (tracking URI {tracking_uri}): "
                        "give --tracking-uri or set MLFLOW_TRACKING_URI to the store your runs were logged to.")
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the store cannot be read
        raise UserError(f"the MLflow store {tracking_uri} cannot be opened: {str(exc).splitlines()[0][:300]}") from exc
    return client


def parse_tags(items: Iterable[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}`` (the value may hold '='); anything else -> UserError."""
    tags: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--tag {item!r} is not KEY=VALUE; e.g. --tag sweep.study=FetchReach-sac_her or --tag seed=3.")
        tags[key.strip()] = value
    return tags


def parse_statuses(items: Iterable[str] | None) -> tuple[str, ...]:
    """Status names (any case) or ``all`` -> MLflow status names; unknown -> UserError."""
    names = [s.upper() for s in (items or DEFAULT_STATUSES)]
    if "ALL" in names:
        return STATUSES
    unknown = [s for s in names if s not in STATUSES]
    if unknown:
        raise UserError(f"--status {' '.join(unknown)} is unknown; use any of {', '.join(STATUSES)}, or all.")
    return tuple(dict.fromkeys(names))


def _experiments(client: MlflowClient, names: Sequence[str] | None) -> dict[str, str]:
    """Experiment id -> name for ``names`` (all active experiments when None)."""
    from mlflow.entities import ViewType

    existing = {e.name: e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)}
    if not existing:
        raise UserError("the MLflow store holds no experiments yet: train something first (python experiment/train.py ...).")
    if not names:
        return {i: n for n, i in existing.items()}
    unknown = [n for n in names if n not in existing]
    if unknown:
        raise UserError(f"unknown experiment(s) {', '.join(unknown)}; the store has: {', '.join(sorted(existing))}.")
    return {existing[n]: n for n in names}


def _search(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _safe(value: str) -> bool:
    return "'" not in value and "\\" not in value and '"' not in value and "`" not in value


def _seed_key(run: Run) -> tuple:
    seed = run.data.tags.get("seed", "")
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def select_runs(client: MlflowClient, experiments: Sequence[str] | None = None, envs: Sequence[str] | None = None,
                algorithms: Sequence[str] | None = None, tags: dict[str, str] | None = None,
                run_ids: Sequence[str] | None = None, statuses: Sequence[str] | None = DEFAULT_STATUSES) -> list[Run]:
    """The runs that match every criterion given (None or empty: no constraint).

    ``experiments``: experiment names (default: all active ones); ``envs`` / ``algorithms``: any of these
    values of the run's ``env`` / ``algorithm`` tag; ``tags``: each tag equal to its value; ``run_ids``:
    only these runs; ``statuses``: MLflow run statuses (default FINISHED and KILLED; None = any).
    Deleted runs are never returned. Order: experiment, env, algorithm, seed, start time.
    Raises UserError for an unknown experiment or run id, or when nothing matches (the message lists
    the envs, algorithms, statuses and asked-for tags that the searched experiments do hold).
    """
    expected = {"env": set(envs or ()), "algorithm": set(algorithms or ()), **{k: {v} for k, v in (tags or {}).items()}}
    expected = {k: v for k, v in expected.items() if v}
    wanted_status = set(statuses) if statuses else set(STATUSES)
    names = _experiments(client, experiments)

    def matches(run: Run) -> bool:
        return (run.info.status in wanted_status and run.info.lifecycle_stage == "active"
                and all(run.data.tags.get(k) in values for k, values in expected.items()))

    if run_ids:
        from mlflow.exceptions import MlflowException

        runs = []
        for run_id in dict.fromkeys(run_ids):
            try:
                run = client.get_run(run_id)
            except MlflowException as exc:
                raise UserError(f"--run-id {run_id}: no such run in the store ({str(exc).splitlines()[0][:200]}).") from exc
            if experiments and run.info.experiment_id not in names:
                raise UserError(f"--run-id {run_id} is in experiment {client.get_experiment(run.info.experiment_id).name}, "
                                f"not in {', '.join(experiments)}.")
            runs.append(run)
    else:
        # Single-value equalities go to the store; MLflow's search has no OR / IN for tags and statuses.
        clauses = [f"tags.`{k}` = '{next(iter(v))}'" for k, v in expected.items() if len(v) == 1 and _safe(k) and _safe(next(iter(v)))]
        if len(wanted_status) == 1:
            clauses.append(f"attributes.status = '{next(iter(wanted_status))}'")
        runs = _search(client, list(names), " and ".join(clauses))
    selected = [r for r in runs if matches(r)]
    if not selected:
        raise UserError(_nothing_matched(client, names, runs if run_ids else None, expected, wanted_status))
    order = {i: k for k, i in enumerate(sorted(names, key=names.get))}
    selected.sort(key=lambda r: (order.get(r.info.experiment_id, -1), r.data.tags.get("env", ""), r.data.tags.get("algorithm", ""),
                                 _seed_key(r), r.info.start_time or 0))
    return selected


def _counts(values: Iterable[str]) -> str:
    counts = Counter(values)
    return ", ".join(f"{v} ({n})" for v, n in sorted(counts.items())) or "none"


def _nothing_matched(client: MlflowClient, names: dict[str, str], runs: list[Run] | None,
                     expected: dict[str, set[str]], statuses: set[str]) -> str:
    """Why nothing matched: what was asked, then what the searched runs hold for each criterion."""
    pool = runs if runs is not None else _search(client, list(names), "")
    asked = [f"{k}={'|'.join(sorted(v))}" for k, v in expected.items()] + [f"status={'|'.join(sorted(statuses))}"]
    where = "run id(s) given" if runs is not None else f"experiment(s) {', '.join(sorted(names.values()))}"
    if not pool:
        return f"no run matches {' '.join(asked)}: {where} hold no runs."
    held = [f"status: {_counts(r.info.status for r in pool)}"]
    for key in dict.fromkeys(["env", "algorithm", *expected]):
        held.append(f"{key}: {_counts(r.data.tags[key] for r in pool if key in r.data.tags)}")
    return f"no run matches {' '.join(asked)}; {where} hold {len(pool)} run(s) with " + "; ".join(held) + "."


def metric_history(client: MlflowClient, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """One metric of one run as ``(steps, values)``: int64 and float64 arrays of shape (n,), steps
    strictly increasing (env steps for our runs). A step logged twice (a resumed run re-logs the
    epochs after its checkpoint) keeps the latest value; NaN and inf values are dropped. A run
    without the metric gives two empty arrays."""
    latest: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, key):
        if m.step not in latest or m.timestamp >= latest[m.step][0]:
            latest[m.step] = (m.timestamp, m.value)
    points = sorted((s, v) for s, (_, v) in latest.items() if math.isfinite(v))
    steps = np.array([s for s, _ in points], dtype=np.int64)
    values = np.array([v for _, v in points], dtype=np.float64)
    return steps, values


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """The run-selection options: --tracking-uri, --experiment, --env, --algorithm, --tag, --run-id, --status."""
    g = parser.add_argument_group("run selection (all given criteria must hold)")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db)")
    g.add_argument("--experiment", nargs="+", action="extend", metavar="NAME", help="experiment names (default: all; one per env)")
    g.add_argument("--env", nargs="+", action="extend", metavar="NAME", help="values of the run's env tag")
    g.add_argument("--algorithm", nargs="+", action="extend", metavar="NAME", help="values of the run's algorithm tag")
    g.add_argument("--tag", action="append", metavar="KEY=VALUE", help="a tag the run must carry with this value (repeatable)")
    g.add_argument("--run-id", nargs="+", action="extend", metavar="ID", help="only these runs")
    g.add_argument("--status", nargs="+", action="extend", metavar="STATUS",
                   help=f"run statuses to include (default: {' '.join(DEFAULT_STATUSES)}; 'all' adds RUNNING, FAILED, SCHEDULED)")


def select_from_args(args: argparse.Namespace, say: Callable[[str], None] | None = None) -> tuple[MlflowClient, list[Run]]:
    """Open the store and select the runs that the options of ``add_selection_arguments`` describe."""
    if args.tracking_uri is not None and not args.tracking_uri.strip():
        raise UserError("--tracking-uri is empty: give the MLflow store, e.g. sqlite:///mlflow.db, or leave the option out for the default.")
    tags = parse_tags(args.tag)
    statuses = parse_statuses(args.status)
    client = open_client(args.tracking_uri or default_tracking_uri())
    runs = select_runs(client, experiments=args.experiment, envs=args.env, algorithms=args.algorithm, tags=tags,
                       run_ids=args.run_id, statuses=statuses)
    if say:
        say(f"{len(runs)} run(s) selected from {args.tracking_uri or default_tracking_uri()}")
    return client, runs


__all__ = ["DEFAULT_STATUSES", "STATUSES", "add_selection_arguments", "default_tracking_uri", "metric_history",
           "open_client", "parse_statuses", "parse_tags", "select_from_args", "select_runs"]
