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

demo: $(VENV)/.rlx-installed
	$(PY) -m rlx.quickstart

lint: $(VENV)/.rlx-test-installed
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q -n 2 tests

bench-deps: $(VENV)/.rlx-test-installed
	$(PIPQ) -e '.[bench]'

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
