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
	$(PY) -m pip install -e ".[test]"
	touch $@

run: install
	$(VENV)/bin/saferl oversee --game pong --overseer scripted --steps 5000 --seed 0 --out runs/pong-labels

test: install
	$(PY) -m pytest -n 2 -q

bench: install
	$(PY) bench/oversight_overhead.py

clean:
	rm -rf $(VENV) runs
