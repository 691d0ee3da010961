# Two entry points for a fresh machine with Python 3.10+, pip and make:
#   make gate   - install into .venv and run the gated reference workload
#   make test   - install into .venv, check lint, import floors (lint-imports) and types
#                 (mypy), then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RTGOV_DIR ?= .rtgov
PYTEST_WORKERS ?= 2

.PHONY: install install-check gate test test-fast test-slow lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project metadata changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A user's install, checked: `pip install .` into a fresh venv in a temporary folder
# (no extras; PyPI needed), no top-level kernels and no memray there, a tiny project
# gated twice, and the footprint printed (docs/usage.md "Install").
install-check:
	$(PYTHON) tests/install_check.py

# BLAS and OpenMP pinned to one thread while measuring: on 2 shared cores, BLAS
# threads are the largest single source of timing noise (docs/measurements.md).
# The pinning is part of the environment fingerprint the baseline is keyed by.
GATE_ENV := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

gate: $(STAMP)
	$(GATE_ENV) $(PY) -m pytest tests/workload --rtgov-gate --rtgov-dir $(RTGOV_DIR) -p no:cacheprovider
	@echo "run record: $(RTGOV_DIR)/runs/$$(cat $(RTGOV_DIR)/latest).json"
	@echo "report:     $(RTGOV_DIR)/report.html"
	@echo "show it:    $(VENV)/bin/rtgov --dir $(RTGOV_DIR) show latest"
	@echo "verify it:  $(VENV)/bin/rtgov --dir $(RTGOV_DIR) verify"

test: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests
	$(PY) -m pytest -q --doctest-modules pytest_rtgov -p no:cacheprovider
	$(PY) -m pytest -m slow tests

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) benches/overhead.py --out benches/results/overhead.json

clean:
	rm -rf $(VENV) $(RTGOV_DIR) .pytest_cache .hypothesis
