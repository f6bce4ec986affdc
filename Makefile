# mriaug: every target creates or reuses the virtual environment it needs.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GRID ?= jobs/thesis.toml
PROFILE ?= slurm/example-gpu.toml

.PHONY: venv lock smoke test lint clean-smoke mutants

# The environment comes from a lock (requirements/README.md): pip-tools' hashed pins, resolved from
# pyproject.toml's ranges. `make venv` installs exactly the dev lock (the runtime lock plus test and lint tools)
# and stamps the environment with the lock's hash (every result's env records it); the container installs
# requirements/runtime.txt only. TORCH=cpu selects the CPU build of torch (requirements/*-cpu.txt).
TORCH ?= cuda
ifeq ($(TORCH),cpu)
LOCK_SUFFIX := -cpu
TORCH_INDEX := --extra-index-url https://download.pytorch.org/whl/cpu
endif
LOCK ?= requirements/dev$(LOCK_SUFFIX).txt
RUNTIME_LOCK := requirements/runtime$(LOCK_SUFFIX).txt

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps $(TORCH_INDEX) -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m mriaug.envlock record $(LOCK) $(RUNTIME_LOCK)
	touch $@

venv: $(STAMP)

requirements/dev-cpu.txt requirements/runtime-cpu.txt:
	@echo "$@ is not written yet: run 'make lock TORCH=cpu' where the PyTorch CPU index can be reached" >&2; exit 1

# Re-resolve the locks after a change to pyproject.toml's dependencies: pins still allowed are kept;
# LOCK_ARGS=--upgrade takes the newest releases the ranges allow (--upgrade-package NAME for one). The dev lock
# is constrained by the runtime one, so both hold the same versions. TORCH=cpu writes the CPU locks (needs
# the PyTorch CPU index, which the development machines cannot reach).
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock$(if $(filter cpu,$(TORCH)), TORCH=cpu)" $(BIN)/pip-compile -q \
	--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(TORCH_INDEX) $(LOCK_ARGS)
lock:
	test -x $(BIN)/pip-compile || $(MAKE) venv TORCH=cuda
	$(PIP_COMPILE) -o $(RUNTIME_LOCK) pyproject.toml $(if $(filter cpu,$(TORCH)),requirements/cpu.in)
	$(PIP_COMPILE) --extra dev -c $(RUNTIME_LOCK) -o requirements/dev$(LOCK_SUFFIX).txt pyproject.toml \
		$(if $(filter cpu,$(TORCH)),requirements/cpu.in)

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
.PHONY: slurm-up slurm-down submit-grid container container-test container-check
slurm-up:
	slurm/cluster.sh up

slurm-down:
	slurm/cluster.sh down

# Submit the grid's missing runs as Slurm arrays plus a collector job, e.g.
#   make submit-grid GRID=jobs/smoke.toml PROFILE=slurm/local.toml
# Then follow with `mriaug status $(GRID) --wait`.
submit-grid: $(STAMP)
	$(BIN)/mriaug submit $(GRID) --profile $(PROFILE)

# The Apptainer image tasks run in: containers/mriaug.sif from containers/mriaug.def, with the host's apptainer,
# else (as root) Debian's in a builder root cached under ~/.cache/mriaug/apptainer (containers/apptainer.sh) and a
# local Debian 12 base instead of Docker Hub's. One build at a time, niced; containers/README.md has the times.
container:
	containers/build.sh containers/mriaug.sif

# The image's own smoke check (the recipe's %test: imports, CLI, lock, a one-epoch phantom run, env.container).
container-test:
	test -f containers/mriaug.sif || { echo "containers/mriaug.sif is not built: run 'make container'" >&2; exit 1; }
	nice -n 19 containers/apptainer.sh test containers/mriaug.sif

# The recipe checked where Apptainer is missing: its %files, %post and %test in a clean Debian root filesystem
# (root, mmdebstrap; about 9 minutes and 7 GB of disk, so not part of `make test` or CI). containers/README.md
# says what it covers.
container-check:
	nice -n 19 containers/check.sh

# The documentation site (mkdocs.yml, docs/; MkDocs + Material, in the dev extra): warnings are errors, a link to
# a missing file among them (no --quiet: it hides the warnings --strict counts, and the build passed with them); the
# grid/profile reference and the module map are generated from the code as it builds. Open build/site/index.html
# (search works from the file system too).
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The study of docs/study/ from start to end, resumable (jobs/study.sh: diffusion models and pools per split, the
# grid's runs, collect, pool reports, report, the README's numbers). About an hour on 2 CPU cores; GRID= for another.
.PHONY: study
study: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} GRID=$${GRID:-jobs/study-cpu.toml} bash jobs/study.sh
