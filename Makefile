# fastsuper developer tasks.  Needs only python3: the first target that runs
# creates .venv and installs into it what that target needs: the package alone
# (editable) for the demo; with its test extras, and numba-cuda for the CUDA
# simulator tests, for the tests.  pip runs with -qq: errors only.

PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
PIP = $(BIN)/pip install -qq --disable-pip-version-check
CREATED = $(VENV)/.created
DEMO_STAMP = $(VENV)/.demo-installed
STAMP = $(VENV)/.installed
CUDA_STAMP = $(VENV)/.cuda-installed
THREADS ?= 2
# pytest-xdist: one test process per core (most of a cold run is Numba compiling,
# one core per process); XDIST= runs the tests in this process
XDIST ?= -n $(THREADS) --dist worksteal

.PHONY: all demo test lint format docs bench compare clean distclean

all: test

$(CREATED):
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	touch $@

# the demo: fastsuper and its runtime dependencies, nothing else
$(DEMO_STAMP): pyproject.toml $(CREATED)
	$(PIP) -e .
	touch $@

$(STAMP): pyproject.toml $(CREATED)
	$(PIP) -e ".[test]"
	touch $@

# numba-cuda (the `cuda` extra), for the kernels on the CUDA simulator
$(CUDA_STAMP): pyproject.toml $(STAMP)
	$(PIP) -e ".[cuda]"
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/fastsuper estimate

# 1. lint and the import contracts (pyproject.toml [tool.importlinter]); 2. unit
# tests, the doctests of the package and the tutorials; 3. CUDA kernels on the
# CUDA simulator (pytest exit code 5, "no tests collected", is accepted); 4. the
# documentation, warnings as errors.
test: $(STAMP) $(CUDA_STAMP)
	$(BIN)/ruff check fastsuper tests benchmarks scripts
	$(BIN)/lint-imports
	OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest -q $(XDIST) tests --doctest-modules fastsuper
	NUMBA_ENABLE_CUDASIM=1 NUMBA_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest -q $(XDIST) -m cudasim tests; \
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
	$(PIP) -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

$(VENV)/.bench-installed: $(STAMP)
	$(PIP) -e ".[bench]"
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/asv machine --yes
	NUMBA_NUM_THREADS=$(THREADS) $(BIN)/asv run --python=same --quick --show-stderr

$(VENV)/.torch-installed: $(STAMP)
	$(PIP) torch==2.13.0
	touch $@

compare: $(VENV)/.torch-installed
	$(BIN)/python scripts/compare_torch.py --threads $(THREADS)

clean:
	rm -rf build dist *.egg-info docs/_build docs/generated .asv \
		.pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
