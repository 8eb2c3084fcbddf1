# The command surface of mlflow-fun. `make demo` and `make test` install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-fast lint demo bench soak serve clean

install: $(STAMP)

# uv installs the pinned packages from its cache in about 2 s (pip: about 20 s). PySpark is
# published as source only, and uv builds it again whenever it asks the index again, so
# it installs offline first and goes to the index only for what its cache lacks (a new
# machine, a new pin). compileall writes the bytecode on every core: the installed
# packages' (not their own test folders, which nothing here imports) and the project's
# (where PYTHONDONTWRITEBYTECODE is set no process writes it, and each `mlflow-fun`
# process compiled what it imports anew: 0.07 CPU-seconds a job).
UV_INSTALL = $(VENV)/bin/uv pip install --quiet --python $(PY) -c constraints.txt -e ".[spark,sql,test]"
$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	$(UV_INSTALL) --offline 2>/dev/null || $(UV_INSTALL)
	$(PY) -m compileall -q -j 0 -x 'site-packages/.+/tests?/' "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" mlflow_fun jobs scripts tests
	touch $(STAMP)

# mypy's cache lives with the user's other caches, as pip's does: a new clone or worktree
# checks in about a second what takes mypy 22 s from nothing (entries are checked against
# each file's content, so a changed file is checked again).
MYPY_CACHE_DIR ?= $(HOME)/.cache/mlflow-fun/mypy
lint: install
	$(VENV)/bin/ruff check mlflow_fun jobs scripts tests
	$(VENV)/bin/ruff format --check mlflow_fun jobs scripts tests
	MYPY_CACHE_DIR="$(MYPY_CACHE_DIR)" $(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Everything: lint, then every tier (tests/unit, tests/spark, tests/integration), in two
# processes (a test file stays in one, with its module fixtures; the longest files first,
# in the order tests/conftest.py gives).
test: lint
	$(VENV)/bin/pytest tests -n 2 --dist loadfile --no-loadscope-reorder --durations=40

# The inner loop: lint, then the unit and spark tiers (no MLflow server, a few minutes).
test-fast: lint
	$(VENV)/bin/pytest tests/unit tests/spark --durations=5

demo: install
	$(PY) scripts/demo.py

# SIZE: empty (20,000 runs), 100k (BENCH_RUNS=100000), or 1m (scripts/bench_million.py:
# 1.2 million runs in 10,001 experiments, about an hour; not in CI).
SIZE ?=
bench: install
ifeq ($(SIZE),1m)
	$(PY) scripts/bench_million.py
else ifeq ($(SIZE),100k)
	BENCH_RUNS=100000 $(PY) scripts/bench.py
else ifeq ($(SIZE),)
	$(PY) scripts/bench.py
else
	@echo "SIZE=$(SIZE): empty (20k), 100k or 1m" >&2; exit 2
endif

# The incremental job back to back under a load generator (not in CI, which runs a short
# version: tests/integration/test_soak.py). SOAK_ROUNDS=200 by default.
soak: install
	$(PY) scripts/soak.py

serve: install
	$(VENV)/bin/mlflow-fun serve --data_dir .demo/data

clean:
	rm -rf .demo .bench .soak .pytest_cache .mypy_cache .ruff_cache
