# mriaug: every target creates or reuses the virtual environment it needs.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GRID ?= jobs/thesis.toml
PROFILE ?= slurm/example-gpu.toml

.PHONY: venv smoke test lint clean-smoke

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

# The main job on the built-in phantom dataset, on a CPU: pool, 72 runs, the three thesis tables.
smoke: $(STAMP)
	$(BIN)/mriaug synth --grid jobs/smoke.toml --generator transform --classes Mild_Demented,Moderate_Demented
	$(BIN)/mriaug grid jobs/smoke.toml

clean-smoke:
	rm -rf results/smoke pools/smoke-transform

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mriaug tests benchmarks
