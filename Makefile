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

test: setup lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup   # the inner loop: all but the slow and SLURM tests (some still train tiny models); CI runs `make test`
	$(BIN)/python -m pytest -m "not slow and not slurm" $(PYTEST_ARGS)

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench/run.py

bench-quick: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench/run.py --quick

clean-venv:
	rm -rf $(VENV)
