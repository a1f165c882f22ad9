# Two commands for a fresh machine (each creates .venv when missing):
#   make train    set up, then run the default experiment
#   make test     set up, then run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup train lint docs test test-fast bench bench-quick clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

train: setup
	$(BIN)/frame train $(ARGS)

lint: setup   # ruff (pyflakes, bugbear, isort, pyupgrade), ruff's formatter, pyright on frame/ and the plugins
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright

docs: setup   # the site under docs/ (mkdocs.yml) into site/; --strict: a warning or a broken link fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(or $(SITE_DIR),site)

# two pytest-xdist workers, a test file to a worker (SLURM's tests all on one): one waits (a subprocess, a
# timeout, a queued job) while the other computes; PYTEST_ARGS='-n 0' runs everything in this process
test: setup lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# the inner loop: the logic of the lower layers (core, config, compat, cli, tracking, trained), 332 tests, without
# those marked slow (they train, start a Python interpreter or import MONAI) or needing SLURM: about 52-58 s on 2 quiet
# cores with two workers (2026-12-06); CI runs `make test`
test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow and not slurm and not multinode" $(FAST) $(PYTEST_ARGS)

FAST := tests/core tests/config tests/compat tests/cli tests/tracking tests/trained tests/test_layers.py

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench/run.py

bench-quick: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench/run.py --quick

clean-venv:
	rm -rf $(VENV)
