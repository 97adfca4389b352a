"""What a researcher sees in ``mlflow ui``: a real 2-trial search through the command line, a real ``mlflow ui``
on its store, and headless Chromium (Debian's ``chromium``, installed by ``make``) on the link the search prints.
The rendered page must be the runs view (not MLflow 3's GenAI overview) with the search's parent run, both trials
and the columns score, env, algorithm and seed."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.net import free_port

SEARCH = ["--multirun", "+search=CartPole/ppo", "hydra.sweeper.n_trials=2", "trainer.n_epochs=1",
          "trainer.eval_after_n_steps=512", "trainer.n_test_rollouts=1", "env.n_envs=1", "trainer.progress_bar=false"]
LINK = re.compile(r"runs in MLflow: mlflow ui(?: --backend-store-uri \S+)?, then (http://127\.0\.0\.1:5000/\S+)")


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium (no sandbox: tests may run as root), 30 s of page time to render."""
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: `make setup` installs Debian's chromium"
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=30000",
                           "--window-size=2400,900", *args], capture_output=True, text=True, timeout=timeout)


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The search's store served by ``mlflow ui`` on a free port; yields (the printed link on that port, root)."""
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    search = run_cli([*SEARCH, f"logger.mlflow.tracking_uri={uri}", f"hydra.sweep.dir={root / 'search'}"], cwd=root,
                     timeout=400)
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    links = LINK.findall(search.stdout + search.stderr)
    assert links, search.stderr[-2000:]
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    with open(root / "ui.log", "w") as log:
        server = subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", "1"], cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert server.poll() is None, (root / "ui.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "mlflow ui did not answer within 180 s"
                time.sleep(1)
        yield links[-1].replace("http://127.0.0.1:5000", f"http://127.0.0.1:{port}"), root
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # mlflow ui starts several processes: stop the whole group
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_the_printed_link_opens_the_runs_view_with_the_search_and_its_trials(ui):
    url, root = ui
    assert "/#/experiments/" in url and "workflowType=machine_learning" in url and "viewStateShareKey=" in url
    page = chromium("--dump-dom", url)
    assert page.returncode == 0, page.stderr[-2000:]
    text = visible_text(page.stdout)
    assert "Runs - Experiment" in text, text[:1500]              # the runs page, not the GenAI overview
    assert "No data available" not in text and "Detect Issues" not in text
    assert "search-CartPole-ppo" in text                          # the search's parent run ...
    assert "CartPole-ppo-trial0-seed0" in text and "CartPole-ppo-trial1-seed0" in text  # ... and its trials, shown
    for column in ("score", "env", "algorithm", "seed", "best_value", "eval/mean_reward"):
        assert re.search(rf"\b{re.escape(column)}\b", text), f"no column {column}: {text[:1500]}"
    shot = root / "runs_view.png"
    assert chromium(f"--screenshot={shot}", url).returncode == 0
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_runs_py_links_prints_the_same_links_for_every_experiment_and_search(ui, capsys):
    from hydrarl.analysis.maintenance import main

    url, root = ui
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assert main(["links", "--tracking-uri", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    experiment = re.search(r"#/experiments/(\d+)/", url).group(1)
    base = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs?workflowType=machine_learning&viewStateShareKey="
    assert lines == [f"CartPole: {base}hydrarl-runs", f"  search CartPole-ppo: {base}hydrarl-search-CartPole-ppo",
                     f"start the UI with: mlflow ui --backend-store-uri {uri}"]
    assert url.endswith("viewStateShareKey=hydrarl-search-CartPole-ppo")
