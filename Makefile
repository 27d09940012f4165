# The project's commands. `make test` and `make demo` work on a fresh machine:
# they create .venv and install what they need into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: help venv demo test test-fast lint format bench bench-quick docs clean

help:
	@echo "make demo         run examples/quickstart.py (the quickstart, on a local folder)"
	@echo "make test         lint, type-check and run the whole test suite"
	@echo "make bench        benchmarks against numpy, lru_cache, joblib and diskcache"
	@echo "make bench-quick  every benchmark scenario at small sizes (< 1 minute)"
	@echo "make docs         build the documentation site into site/ (offline, warnings as errors)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,frames,polars,graph,parallel,dask,s3,docs]"
	@touch $@

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,frames,polars,graph,parallel,dask,s3,docs]"
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy

test: lint $(BENCH_STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not stress"

format: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks
	$(BIN)/ruff check --fix src tests examples benchmarks

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py

bench-quick: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis demo_cache site
