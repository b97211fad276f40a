# Every target bootstraps its own virtual environment from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
PKGS   := hypervisor minikern $(wildcard lessons)
LINTED := $(wildcard hypervisor minikern lessons tests benchmarks docs conftest.py)

# Bytecode is cached (in __pycache__/, ignored by git) whatever the environment says:
# with PYTHONDONTWRITEBYTECODE set, each test worker and each `python -m minikern` a
# test starts compiles every module again (and pytest rewrites every test module).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: test test-long lint typecheck pytest demo bench docs docs-serve clean

# uv (from PyPI, into the venv) installs the project: a fresh bootstrap takes seconds,
# not a minute. pip goes in too (the docs build and `minikern lab bundle` use it).
# Without a pip for $(PYTHON) (or one older than 22.3), the venv's own pip fetches uv.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	test -x $(BIN)/uv || $(PYTHON) -m pip --python $(BIN)/python install --quiet --quiet uv \
	    || { $(BIN)/python -m ensurepip --default-pip && $(BIN)/python -m pip install --quiet uv; }
	$(BIN)/uv pip install --quiet --python $(BIN)/python pip -e '.[test,docs]'
	rm -f $(VENV)/.installed-*
	touch $@

test: lint typecheck pytest

# The same suite with the deep Hypothesis profile (many more examples and steps).
test-long: lint typecheck
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(BIN)/mypy --strict $(PKGS)

pytest: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

demo: $(STAMP)
	$(BIN)/python -m minikern demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The tutorial site: pictures drawn from the simulator, the Pyodide runtime and
# the wheels vendored into docs/_build/html/_runtime (downloads cached in .cache/).
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q docs docs/_build/html
	touch docs/_build/html/.built

docs-serve: docs
	$(BIN)/minikern docs serve

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache docs/_build .cache
