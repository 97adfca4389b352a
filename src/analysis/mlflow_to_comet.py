"""Copy recorded MLflow runs into Comet: ``python experiment/mlflow_to_comet.py [selection] [--offline DIR]``.

For sweeps whose workers could not reach Comet: each selected run becomes one Comet experiment
with the run's name, params, tags, every metric's full history (step = env steps), its models,
videos and other artifacts. The copy goes through :class:`CometTracker`, so an uploaded run looks
exactly like one logged live. ``--offline DIR`` writes offline archives there instead (upload
later with ``comet upload DIR/*.zip``). Each copied run gets the MLflow tag
``comet.experiment_key``; runs that carry it are skipped unless ``--force``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from hydrarl.analysis.runs import add_selection_arguments, select_from_args
from hydrarl.cli_args import ArgumentParser
from hydrarl.errors import UserError, exit_on_user_error
from hydrarl.trackers.base import RunRecord
from hydrarl.trackers.comet_tracker import CometTracker, configured_api_key

COPIED_TAG = "comet.experiment_key"
MODEL_FOLDERS = ("best_model", "final_model")


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="experiment/mlflow_to_comet.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_selection_arguments(p)
    p.add_argument("--offline", metavar="DIR", type=Path, help="write offline archives to DIR instead of uploading")
    p.add_argument("--project", help="Comet project (default: the run's env, lower case)")
    p.add_argument("--workspace", help="Comet workspace (default: the API key's)")
    p.add_argument("--force", action="store_true", help=f"copy runs again even if they carry the tag {COPIED_TAG}")
    return p


def _metric_steps(client: MlflowClient, run: Run) -> dict[int, dict[str, float]]:
    """Every metric's history, regrouped as {step: {name: value}}."""
    by_step: dict[int, dict[str, float]] = defaultdict(dict)
    for key in run.data.metrics:
        for m in client.get_metric_history(run.info.run_id, key):
            by_step[m.step][key] = m.value
    return dict(sorted(by_step.items()))


def _artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files.extend(_artifact_files(client, run_id, info.path) if info.is_dir else [info.path])
    return files


def copy_run(client: MlflowClient, run: Run, tracker: CometTracker) -> tuple[str, int, int]:
    """Replay one MLflow run into ``tracker``; returns (experiment key, steps logged, files logged)."""
    tags = {k: v for k, v in run.data.tags.items() if k != COPIED_TAG}
    tags["source.mlflow_run_id"] = run.info.run_id
    tracker.start(RunRecord(run_dir=Path("."), run_name=run.info.run_name or run.info.run_id, params=dict(run.data.params), tags=tags))
    key = tracker.run_id
    steps = _metric_steps(client, run)
    for step, metrics in steps.items():
        tracker.log_metrics(metrics, step=step)
    last_step = max(steps, default=0)
    files = _artifact_files(client, run.info.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            local = Path(client.download_artifacts(run.info.run_id, path, tmp))
            folder = path.split("/")[0] if "/" in path else None
            if folder in MODEL_FOLDERS:
                tracker.log_model(local, folder)
            elif local.suffix == ".mp4":
                tracker.log_video(local, step=_video_step(run, local, steps) or last_step)
            else:
                tracker.log_artifact(local, str(Path(path).parent) if folder else None)
        tracker.finish(run.info.status.lower())
    client.set_tag(run.info.run_id, COPIED_TAG, key)
    return key, len(steps), len(files)


def _video_step(run: Run, video: Path, steps: dict[int, dict[str, float]]) -> int | None:
    """The env step of ``videos/epoch_<k>.mp4``: the step at which epoch k was logged."""
    try:
        epoch = int(video.stem.removeprefix("epoch_"))
    except ValueError:
        return None
    return next((s for s, m in steps.items() if m.get("time/epoch") == epoch), None)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not args.offline and not configured_api_key():
        raise UserError("no Comet API key is configured (COMET_API_KEY or ~/.comet.config): "
                        "configure one to upload, or write offline archives with --offline DIR.")
    client, runs = select_from_args(args, say=print)
    mode = "offline" if args.offline else "online"
    target = Path(args.offline) if args.offline else Path(".")
    copied = 0
    for run in runs:
        if COPIED_TAG in run.data.tags and not args.force:
            print(f"skip  {run.info.run_id} {run.info.run_name}: already copied as {run.data.tags[COPIED_TAG]} (--force copies again)")
            continue
        tracker = CometTracker(target, mode=mode, project_name=args.project, workspace=args.workspace, offline_directory=".")
        key, n_steps, n_files = copy_run(client, run, tracker)
        copied += 1
        print(f"copy  {run.info.run_id} {run.info.run_name} -> comet {key} ({n_steps} steps of metrics, {n_files} files)")
    where = f"offline archives in {target}" if args.offline else "Comet"
    print(f"{copied} run(s) copied to {where}")
    return 0
