"""Upkeep of an MLflow store: ``python experiment/runs.py close-stale|links [--tracking-uri URI] ...``.

``links`` prints, for every experiment of the store, the link to its runs view in ``mlflow ui`` and one per
search recorded in it (``hydrarl.trackers.mlflow_view``), and writes the views into experiments that lack them.

``close-stale`` ends as KILLED the runs left RUNNING by a process that died without ending them (SIGKILL,
an out-of-memory kill, a power loss): those whose run directory no live process holds
(``hydrarl.trackers.mlflow_tracker.close_stale_runs``). A live run is never touched. A run started or
resumed in a run directory does the same for that directory by itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydrarl.analysis.runs import open_client
from hydrarl.cli_args import ArgumentParser
from hydrarl.errors import UserError, exit_on_user_error
from hydrarl.paths import default_tracking_uri


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="experiment/runs.py", description="Upkeep of the MLflow store of recorded runs.")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    close = commands.add_parser("close-stale", help="end as KILLED the RUNNING runs whose process is dead",
                                description="End as KILLED the RUNNING runs whose run directory no live process holds "
                                            "(their process was killed: SIGKILL, out of memory, power loss).")
    close.add_argument("--tracking-uri", default=None,
                       help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db)")
    close.add_argument("--under", type=Path, default=None, metavar="DIR",
                       help="only runs whose run directory lies under DIR (e.g. a sweep directory)")
    links = commands.add_parser("links", help="print the link to each experiment's and search's runs in mlflow ui",
                                description="Print the mlflow ui link to the runs of each experiment and each search.")
    links.add_argument("--tracking-uri", default=None,
                       help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db)")
    return p


def print_links(uri: str) -> None:
    """Print each experiment's runs view and each search's view (writing the views where missing)."""
    from hydrarl.trackers.mlflow_tracker import ensure_experiment
    from hydrarl.trackers.mlflow_view import publish_view, runs_url, ui_command

    client = open_client(uri)
    for experiment in client.search_experiments():
        if experiment.name == "Default" and not client.search_runs([experiment.experiment_id], max_results=1):
            continue
        ensure_experiment(client, uri, experiment.name)
        print(f"{experiment.name}: {runs_url(uri, experiment.experiment_id)}")
        studies = sorted({r.data.tags["sweep.study"] for r in client.search_runs(
            [experiment.experiment_id], "tags.`sweep.study` != ''", max_results=10_000) if "sweep.study" in r.data.tags})
        for study in studies:
            publish_view(client, experiment.experiment_id, study)
            print(f"  search {study}: {runs_url(uri, experiment.experiment_id, study)}")
    command = ui_command(uri)
    if command:
        print(f"start the UI with: {command}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``experiment/runs.py``; returns the exit status (2: bad input)."""
    args = parser().parse_args(argv)
    if args.command == "links":
        print_links(args.tracking_uri or default_tracking_uri())
        return 0
    from hydrarl.trackers.mlflow_tracker import close_stale_runs

    if args.under is not None and not args.under.is_dir():
        raise UserError(f"--under {args.under}: no such directory (give a run or sweep directory).")
    uri = args.tracking_uri or default_tracking_uri()
    open_client(uri)  # a missing or unreadable store is a UserError, not a new empty store
    where = f" under {args.under}" if args.under else ""
    print(f"looking for stale RUNNING runs{where} in {uri}", flush=True)
    closed = close_stale_runs(uri, under=args.under, report=lambda line: print(line, flush=True))
    print(f"{len(closed)} stale run(s) closed as KILLED", flush=True)
    return 0
