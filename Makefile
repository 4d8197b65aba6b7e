# fastsuper developer tasks.  Needs only python3: the first target that runs
# creates .venv and installs the package (editable) with its test extras.

PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
THREADS ?= 2

.PHONY: all demo test lint format docs bench compare clean distclean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,cuda]"
	touch $@

demo: $(STAMP)
	$(BIN)/fastsuper estimate

# 1. lint and the import contracts (pyproject.toml [tool.importlinter]); 2. unit
# tests, the doctests of the package and the tutorials; 3. CUDA kernels on the
# CUDA simulator (pytest exit code 5, "no tests collected", is accepted); 4. the
# documentation, warnings as errors.
test: $(STAMP)
	$(BIN)/ruff check fastsuper tests benchmarks scripts
	$(BIN)/lint-imports
	OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest -q tests --doctest-modules fastsuper
	NUMBA_ENABLE_CUDASIM=1 NUMBA_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest -q -m cudasim tests; \
		rc=$$?; if [ $$rc -eq 5 ]; then echo "no cudasim tests collected"; rc=0; fi; exit $$rc
	$(MAKE) docs

lint: $(STAMP)
	$(BIN)/ruff check fastsuper tests benchmarks scripts
	$(BIN)/ruff format --check fastsuper tests benchmarks scripts
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format fastsuper tests benchmarks scripts
	$(BIN)/ruff check --fix fastsuper tests benchmarks scripts

$(VENV)/.docs-installed: $(STAMP)
	$(BIN)/pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/asv machine --yes
	NUMBA_NUM_THREADS=$(THREADS) $(BIN)/asv run --python=same --quick --show-stderr

$(VENV)/.torch-installed: $(STAMP)
	$(BIN)/pip install -q torch==2.13.0
	touch $@

compare: $(VENV)/.torch-installed
	$(BIN)/python scripts/compare_torch.py --threads $(THREADS)

clean:
	rm -rf build dist *.egg-info docs/_build docs/generated .asv \
		.pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
