#!/usr/bin/env bash
# The env x algorithm regression matrix. ./run_testing.sh -h for the options; logic in src/launchers/run_testing.py.
cd "$(dirname "$0")" || exit 2
PYTHON=.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" -m hydrarl.launchers.run_testing "$@"
