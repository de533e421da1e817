# Two commands do everything on a fresh machine: `make reproduce` (the main job) and `make test`.
# Both create .venv and install what they need; TORCH pins the build CI uses (the CPU wheel on
# the CI machine's disk). On a CUDA machine set TORCH="torch" or your preferred build.
# CONSTRAINTS pins every other package to the versions CI installs; CONSTRAINTS= installs the
# newest that pyproject.toml's ranges allow (needed on Python 3.10, which the pins do not support).
PYTHON ?= python3
TORCH ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup test reproduce smoke bench lock clean

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIN) "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIN) -e ".[notebooks,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mnadlib)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# A fresh TMPDIR: the notebooks' default run folder (<temp dir>/mnadlib-runs/default) starts empty,
# so 02 trains under nbval instead of finding an earlier run's model there.
test: $(STAMP)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	TMPDIR=$$tmp $(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

reproduce: $(STAMP)
	$(BIN)/python -m mnadlib.reproduce $(ARGS)

smoke: $(STAMP)
	$(BIN)/python -m mnadlib.reproduce --smoke $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m mnadlib bench --sizes 64 128 256 --threads 2

# Rewrites constraints.txt from .venv (its header kept): run after `make setup CONSTRAINTS=` in a fresh .venv.
lock: $(STAMP)
	{ grep '^#' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable --exclude torch | grep -v '^#'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
