# The two commands of the README: `make run` (the main job) and `make test` (the test suite).
# Each creates the virtual environment itself: torch 2.13.0 first (the CPU wheel), then the package.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export SDL_VIDEODRIVER ?= dummy
export SDL_AUDIODRIVER ?= dummy

.PHONY: install run test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
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

test: install
	$(PY) -m pytest -n 2 -q

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) runs
