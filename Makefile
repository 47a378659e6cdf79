# The two set-up commands of the README. Each creates the virtualenv on first use.
#   make demo   runs the default experiment (offline, CPU)
#   make test   lints and runs the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# pip's notes about missing local find-links folders are noise on some machines.
PIPQ := $(PIP) install -q --disable-pip-version-check

.PHONY: demo test lint bench-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.rlx-installed: setup.py | $(PY)
	$(PIPQ) -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import rlx" && touch $@

$(VENV)/.rlx-test-installed: setup.py | $(PY)
	$(PIPQ) -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import rlx, pytest, torch" && touch $@ $(VENV)/.rlx-installed

# The demo is a CPU experiment: JAX_PLATFORMS=cpu (unless set) also keeps a libtpu that
# the test extra installed (for rlx.plan) from probing for a TPU at start-up.
demo: $(VENV)/.rlx-installed
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(PY) -m rlx.quickstart

lint: $(VENV)/.rlx-test-installed
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=40 tests

bench-deps: $(VENV)/.rlx-test-installed
	$(PIPQ) -e '.[bench]'

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
