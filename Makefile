# Two entry points (see README "Quick start"); both create the virtual environment on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: demo test lint bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,parquet,ac,report]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/tdmarket compare --example --report results/example.html

# one worker per core; --dist loadfile keeps a module's tests (and its module-scoped fixtures) on one worker
test: $(VENV)/.installed
	$(PY) -m pytest -q -n auto --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy tdmarket

bench: $(VENV)/.installed
	$(PY) benchmarks/load.py
	$(PY) benchmarks/centralized_relaxed.py
	$(PY) benchmarks/centralized_mip.py
	$(PY) benchmarks/hierarchical.py
	$(PY) benchmarks/hierarchical_variants.py
