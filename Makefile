# mriaug: every target creates or reuses the virtual environment it needs.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GRID ?= jobs/thesis.toml
PROFILE ?= slurm/example-gpu.toml

.PHONY: venv smoke test lint clean-smoke mutants

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

# Mutation testing (mutmut) of the modules that compute numbers, each against its own known-answer tests
# ([tool.mutmut] in pyproject.toml); prints the score and the mutants not killed (tests/README.md). From scratch
# every time, about 20 minutes on 2 cores; MUTANT_JOBS sets the parallel workers.
MUTANT_JOBS ?= 2
mutants: $(STAMP)
	rm -rf mutants && mkdir mutants
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTANT_JOBS) > mutants/run.log 2>&1 || { tail -c 3000 mutants/run.log; exit 1; }
	$(BIN)/python tests/mutation_score.py

# ruff, the import layers of pyproject.toml (an upward import fails), and the type checker.
lint: $(STAMP)
	$(BIN)/ruff check mriaug tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

# The single-node Slurm test cluster (munged + slurmctld + slurmd on this host; needs root). Idempotent.
.PHONY: slurm-up slurm-down submit-grid container
slurm-up:
	slurm/cluster.sh up

slurm-down:
	slurm/cluster.sh down

# Submit the grid's missing runs as Slurm arrays plus a collector job, e.g.
#   make submit-grid GRID=jobs/smoke.toml PROFILE=slurm/local.toml
# Then follow with `mriaug status $(GRID) --wait`.
submit-grid: $(STAMP)
	$(BIN)/mriaug submit $(GRID) --profile $(PROFILE)

# The Apptainer image the GPU profiles run tasks in (needs apptainer; see containers/README.md).
container:
	apptainer build containers/mriaug.sif containers/mriaug.def

# The documentation site (mkdocs.yml, docs/; MkDocs + Material, in the dev extra): warnings are errors; the
# grid/profile reference and the module map are generated from the code as it builds. Open build/site/index.html.
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
