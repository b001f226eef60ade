# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
N ?= 200
UI_PORT ?= 3000
SCREENSHOTS ?= $(CURDIR)/poster_data/ui-screenshots

.PHONY: install demo ssl quantize test test-fast test-scale ui ui-check lint docs clean-data

# The venv is made once: re-making it over itself with another interpreter than the one it was
# made with (another python3.11 on PATH) would break it; a changed pyproject only re-installs.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { \
	  $(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "poster-assets needs Python 3.11"' && \
	  $(PYTHON) -m venv $(VENV); }
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

# INT8 networks are made and judged against float on the 200-poster demo once per machine
# (about 12 minutes on 2 cores; only those whose gate holds are used), then the demo is
# re-extracted with them.
quantize: $(STAMP)
	$(BIN)/poster-assets models quantize
	$(BIN)/poster-assets run --all

test: $(STAMP)
	$(BIN)/pytest

# The contributor's lane: no real model runs, no training (about a minute).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

# The several-machines lane: PostgreSQL, Redis and two Celery workers on loopback
# (deploy/celery/services.sh; installed from Debian when missing, which needs root) extract batches
# side by side and after a worker is killed (about 6 minutes on 2 cores).
test-scale: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,scale]'
	@command -v redis-server >/dev/null || { apt-get update && apt-get install -y --no-install-recommends redis-server; }
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { apt-get update && apt-get install -y --no-install-recommends postgresql; }
	$(BIN)/pytest -m scale poster_assets_tests/scale

ui: $(STAMP)
	$(BIN)/poster-assets ui --port $(UI_PORT)

# The UI in a real browser: Playwright from PyPI driving Debian's chromium (installed here when
# missing, which needs root), over a small demo home; screenshots land in $(SCREENSHOTS).
ui-check: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,browser]'
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; }
	POSTER_ASSETS_SCREENSHOTS=$(SCREENSHOTS) $(BIN)/pytest -m browser -s poster_assets_tests/ui

lint: $(STAMP)
	$(BIN)/ruff check poster_assets poster_assets_tests benchmarks
	$(BIN)/lint-imports

# The README's asset graph, drawn from the definitions.
docs: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m poster_assets.cli.docs

clean-data:
	rm -rf poster_data
