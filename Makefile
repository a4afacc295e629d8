# `make run` (the main job) and `make test` (the full test suite) on a fresh machine; `make test-fast` and
# `make lint` for development. Each creates the virtual environment itself: torch 2.13.0 first (the CPU
# wheel), then the package with its test extra.

# The first of python3.11, python3.12, python3.13, python3 that runs and is 3.11 or newer (make PYTHON=... to choose).
ifndef PYTHON
PYTHON := $(shell for p in python3.11 python3.12 python3.13 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
endif
VENV ?= .venv
PY := $(VENV)/bin/python
export SDL_VIDEODRIVER ?= dummy
export SDL_AUDIODRIVER ?= dummy

.PHONY: install run test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no Python 3.11 or newer found (tried python3.11, python3.12," \
		"python3.13, python3); install one or give make PYTHON=/path/to/python3" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[test,distributed]"
	touch $@

MAIN_RUN ?= runs/pong-quick

# The main job; run again, it resumes an interrupted experiment (or just rewrites a finished one's report).
run: install
	if [ -f $(MAIN_RUN)/config.json ]; then \
		$(VENV)/bin/saferl experiment --resume $(MAIN_RUN); \
	else \
		$(VENV)/bin/saferl experiment --config experiments/pong_quick.yml --out $(MAIN_RUN); \
	fi

# The full suite (what CI runs: .ci/run).
test: install
	$(PY) -m pytest -n 2 -q

# Everything not marked slow.
test-fast: install
	$(PY) -m pytest -n 2 -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check saferl tests bench

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) runs
