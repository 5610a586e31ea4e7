# Two commands on a fresh machine:
#   make run    set everything up, then run the whole platform (glasscast up)
#   make test   set everything up, then run the test suite
VENV ?= .venv
PYTHON ?= python3
ARGS ?=

.PHONY: run test setup bench clean

run: setup
	$(VENV)/bin/glasscast up $(ARGS)

test: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider $(ARGS)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing ffmpeg (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq ffmpeg >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

bench: setup
	$(VENV)/bin/python bench/events.py

clean:
	rm -rf $(VENV) data
