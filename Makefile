# Two commands: `make train` (set-up + the default run) and `make test` (set-up + the tests).
# The set-up creates .venv and installs the project with every extra, pinned by constraints.txt;
# it re-runs only when pyproject.toml or constraints.txt change.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := box2d,comet,pybullet,tensorboard,slurm,postgres,offline,jax,test
# Test processes at once, for pytest and the function tier: one more than the 2 cores this is measured on,
# because tests and jobs spend part of their time waiting on subprocesses, simulators and HTTP.
PYTEST_WORKERS ?= 3

export COMET_AUTO_LOG_ENV_DETAILS ?= false
export COMET_ERROR_TRACKING_ENABLE ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export RAY_USAGE_STATS_ENABLED ?= 0
export SDL_VIDEODRIVER ?= dummy
export MUJOCO_GL ?= egl
export NO_MKDOCS_2_WARNING ?= 1
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Off-screen rendering (render=record, evaluate.py --video): MuJoCo draws through EGL (Mesa).
RENDER_LIBS := libegl1 libegl-mesa0 libgl1-mesa-dri libgles2
# The viewer test (experiment/play.py) runs a real X server and presses real keys.
SCREEN_TOOLS := xvfb xdotool
# The browser test loads `mlflow ui` in a real, headless browser.
BROWSER := chromium
# The scale-out tests (docs/scaling.md) start real servers on 127.0.0.1: PostgreSQL (a shared Optuna study, an
# MLflow server's database) and a one-node SLURM cluster with job accounting (munge, slurmdbd on MariaDB).
SERVERS := postgresql-15 slurm-wlm slurmdbd munge mariadb-server
export MENAGERIE_ROOT ?= $(abspath ../shared/menagerie)

.PHONY: setup system train test matrix lint docs clean

setup: $(STAMP)

# Debian packages the project needs beside Python, checked on every make (installed only when missing).
system:
	@ldconfig -p | grep -q 'libEGL.so.1' || { echo "installing EGL for off-screen rendering: $(RENDER_LIBS)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $(RENDER_LIBS); }
	@command -v Xvfb >/dev/null && command -v xdotool >/dev/null || { echo "installing a virtual screen: $(SCREEN_TOOLS)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $(SCREEN_TOOLS); }
	@command -v chromium >/dev/null || { echo "installing a headless browser: $(BROWSER)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $(BROWSER); }
	@test -x /usr/lib/postgresql/15/bin/initdb && test -x /usr/sbin/slurmdbd && test -x /usr/sbin/mariadbd || { \
		echo "installing servers for the scale-out tests: $(SERVERS)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SERVERS); }

$(STAMP): pyproject.toml constraints.txt | system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	$(BIN)/pip check
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python experiment/train.py $(ARGS)

# The function tier checks every env x algorithm pair at the agent factory and trains a covering set (-c: each
# algorithm on one env of each kind it acts in, each env at least once; one short epoch and a round trip each),
# which brought CI from 19 to about 15 minutes on 2 cores; `make matrix` trains every valid pair (docs/matrix.md). Since the tier
# checks every pair at the factory, pytest leaves out its own check of one env of each kind (tests/agents/test_pairs.py,
# the same pairs; it runs when pytest runs alone).
FACTORY_CHECK := tests/agents/test_pairs.py::test_the_factory_builds_or_refuses_every_pair_as_the_expected_refusals_say
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal --deselect $(FACTORY_CHECK) $(PYTEST_ARGS)
	$(BIN)/mkdocs build --strict --quiet
	./run_testing.sh -t function -c -p $(PYTEST_WORKERS) -s 0

# The regression matrix's function tier alone: every valid env x algorithm pair, one short epoch each (~8 min).
matrix: $(STAMP)
	./run_testing.sh -t function -p $(PYTEST_WORKERS) -s 0

# The documentation site (mkdocs.yml) into build/site; strict: a broken link, anchor or nav entry fails.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
