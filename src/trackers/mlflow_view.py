"""What ``mlflow ui`` shows of our experiments: the runs table, with the columns a researcher looks at.

MLflow 3's UI (3.17) opens every experiment on its GenAI pages (traces, an empty overview) unless the browser
was switched to "Model training" before: the choice is the URL's ``workflowType`` or the browser's saved one,
not the experiment's ``mlflow.experimentKind`` tag. Its runs table shows run name, date, dataset, source and
models; metrics, params and tags are columns a user must pick by hand.

So every experiment we create also carries a *shared view* (the UI's own "share view" mechanism: an
experiment tag ``mlflow.sharedViewState.<key>`` holding the page's state as JSON, loaded by the URL
parameter ``viewStateShareKey=<key>`` on the experiment's runs page) with the columns score, env, algorithm,
seed, the evaluation metrics and a search's best value; each search adds a view of its own runs.
:func:`runs_url` is the link to a view; runs and searches print it when they end.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

RUNS_VIEW = "hydrarl-runs"  # every run of the experiment
TAG_PREFIX = "mlflow.sharedViewState."
DEFAULT_UI = "http://127.0.0.1:5000"  # where a plain ``mlflow ui`` listens
DEFAULT_STORE = "sqlite:///mlflow.db"  # what a plain ``mlflow ui`` opens (in the directory it is started in)
COLUMNS = [  # the UI's column keys: <type>.`<name>`
    "metrics.`score`", "tags.`env`", "tags.`algorithm`", "tags.`seed`", "metrics.`eval/success_rate`",
    "metrics.`eval/mean_reward`", "metrics.`best_value`", "tags.`sweep.trial`", "attributes.`Duration`",
]


def view_key(study: str | None = None) -> str:
    """The share key of the experiment's runs view, or of search ``study``'s view."""
    return RUNS_VIEW if study is None else "hydrarl-search-" + re.sub(r"[^A-Za-z0-9_.-]", "_", study)


def view_state(study: str | None = None) -> str:
    """The view as its tag holds it: our columns; for a search, only its runs (the parent and its trials, which
    the tag ``sweep.study`` marks), in one group so that the trials show without expanding the parent (the UI
    does not share which runs are expanded)."""
    state: dict = {"selectedColumns": COLUMNS}
    if study is not None:
        state["searchFilter"] = f"tags.`sweep.study` = '{study}'"
        state["groupBy"] = {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "sweep.study"}]}
    return json.dumps(state, separators=(",", ":"))


def write_once(write: Callable[[], None], holds: Callable[[], bool]) -> None:
    """``write`` a tag that other processes may be writing at the same moment: an MLflow server on PostgreSQL
    refuses the second of two concurrent writers of a new tag (a duplicate key), which is fine when the store
    then ``holds`` what was wanted."""
    try:
        write()
    except MlflowException:
        if not holds():
            raise


def publish_view(client: MlflowClient, experiment_id: str, study: str | None = None) -> None:
    """Write (or rewrite) the experiment's runs view, or search ``study``'s view, as an experiment tag."""
    key, state = TAG_PREFIX + view_key(study), view_state(study)
    write_once(lambda: client.set_experiment_tag(experiment_id, key, state),
               lambda: client.get_experiment(experiment_id).tags.get(key) == state)


def runs_url(tracking_uri: str, experiment_id: str, study: str | None = None) -> str:
    """The link to the runs view (``study``: the search's view), on the tracking server itself or on a local
    ``mlflow ui``."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else DEFAULT_UI
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={view_key(study)}"


def ui_command(tracking_uri: str) -> str | None:
    """The command that serves ``tracking_uri``'s runs on :data:`DEFAULT_UI` (None for a tracking server)."""
    if tracking_uri.startswith(("http://", "https://")):
        return None
    local = tracking_uri == DEFAULT_STORE or tracking_uri == f"sqlite:///{os.path.abspath('mlflow.db')}"
    return "mlflow ui" if local else f"mlflow ui --backend-store-uri {tracking_uri}"


def browse_hint(tracking_uri: str, experiment_id: str, study: str | None = None) -> str:
    """One line: how to open the runs in the UI (the command to start it where the store is a file)."""
    url, command = runs_url(tracking_uri, experiment_id, study), ui_command(tracking_uri)
    return f"runs in MLflow: {url}" if command is None else f"runs in MLflow: {command}, then {url}"


__all__ = ["COLUMNS", "RUNS_VIEW", "TAG_PREFIX", "browse_hint", "publish_view", "runs_url", "ui_command", "view_key", "view_state"]
