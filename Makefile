# Two commands on a fresh machine:
#   make run    set everything up, then run the whole platform (glasscast up)
#   make test   set everything up (and Chromium and kcat for the tests), then lint, type-check and run the test suite
VENV ?= .venv
PYTHON ?= python3
ARGS ?=
# The suite runs in two pytest-xdist workers, a test file per worker at a time (module fixtures stay
# whole); most tests wait on sockets, child processes and real-time media, so two overlap well here.
# `make test WORKERS=0 ARGS=...` runs in one process.
WORKERS ?= 2
WEB := gateways/web

.PHONY: run test lint setup chromium bench clean

run: setup
	$(VENV)/bin/glasscast up $(ARGS)

test: setup chromium lint
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(WORKERS) --dist loadfile $(ARGS)

# ruff's rule set and mypy's strictness live in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

setup: $(VENV)/.installed $(WEB)/node_modules/.installed

$(VENV)/.installed: pyproject.toml
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing ffmpeg (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq ffmpeg >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

# hls.js and uPlot for the web app, exactly as package-lock.json pins them (again whenever the lock changes).
$(WEB)/node_modules/.installed: $(WEB)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo "installing npm (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq npm >/dev/null; }
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The browser tests drive Debian's Chromium (bench/browser.py); the CLI tests run Debian's kcat.
chromium:
	@command -v chromium >/dev/null 2>&1 && command -v kcat >/dev/null 2>&1 || { \
	  echo "installing chromium and kcat (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium kcat >/dev/null; }

bench: setup
	$(VENV)/bin/python bench/events.py

clean:
	rm -rf $(VENV) data
