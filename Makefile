# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
N ?= 200

.PHONY: install demo ssl test test-fast ui lint clean-data

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "poster-assets needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/poster-assets demo --n $(N)

# Training takes minutes on 2 cores (a GPU is used when present), so it is its own step.
ssl: $(STAMP)
	$(BIN)/poster-assets train-encoder
	$(BIN)/poster-assets run --all

test: $(STAMP)
	$(BIN)/pytest

# The contributor's lane: no real model runs, no training (about a minute).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

ui: $(STAMP)
	$(BIN)/poster-assets ui

lint: $(STAMP)
	$(BIN)/ruff check poster_assets poster_assets_tests benchmarks
	$(BIN)/lint-imports

clean-data:
	rm -rf poster_data
