"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and they bite: an upward import
added to a copy of the package breaks them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (the `test` extra)")


def lint_imports(cwd: Path, pythonpath: Path | None = None, contracts: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``lint-imports`` in ``cwd`` (its pyproject.toml), only the given contract ids if any."""
    env = dict(os.environ, COLUMNS="250")  # rich wraps long lines at the terminal's width
    if pythonpath is not None:  # ahead of the editable install's finder, which comes last on sys.meta_path
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo", *(a for c in contracts for a in ("--contract", c))]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def package_copy(tmp_path: Path) -> Path:
    """src/ copied as tmp_path/hydrarl, and hydra_plugins/, with the contracts beside them; returns tmp_path."""
    shutil.copytree(ROOT / "src", tmp_path / "hydrarl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "hydra_plugins", tmp_path / "hydra_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_contracts_hold_on_the_package():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_unchanged_copy_passes(tmp_path):
    # The copy, not the installed package, is what is checked below: it must pass as it is.
    root = package_copy(tmp_path)
    done = lint_imports(root, pythonpath=root, contracts=("layers",))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("module", "added"),
    [
        ("errors.py", "import hydrarl.launchers"),  # bottom -> top
        ("training/seeding.py", "def _added():\n    from hydrarl.analysis import runs"),  # lazy: still seen
        ("agents/noise.py", "import hydrarl.envs.factory"),  # siblings that must stay independent
    ],
)
def test_an_upward_import_breaks_the_contracts(tmp_path, module, added):
    root = package_copy(tmp_path)
    path = root / "hydrarl" / module
    path.write_text(path.read_text() + f"\n\n{added}  # noqa: F401\n")
    done = lint_imports(root, pythonpath=root, contracts=("layers",))
    assert done.returncode != 0, done.stdout + done.stderr
    assert "1 broken" in done.stdout, done.stdout
    importer = "hydrarl." + module.removesuffix(".py").replace("/", ".")
    assert re.search(rf"-\s+{re.escape(importer)} -> hydrarl\.", done.stdout), done.stdout


def test_the_engine_may_not_import_the_sweeper_plugin(tmp_path):
    root = package_copy(tmp_path)
    path = root / "hydrarl" / "training" / "train.py"
    path.write_text(path.read_text() + "\n\nimport hydra_plugins.rl_optuna_sweeper.rl_optuna_sweeper  # noqa: F401, E402\n")
    done = lint_imports(root, pythonpath=root, contracts=("sweeper-plugin",))
    assert done.returncode != 0, done.stdout + done.stderr
    assert re.search(r"-\s+hydrarl\.training\.train -> hydra_plugins\.rl_optuna_sweeper", done.stdout), done.stdout
