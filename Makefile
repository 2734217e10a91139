# cdbench — set up, run the synthetic demo, test.
# Quick start (README): `make demo` and `make test` on a fresh machine.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cdbench-installed

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
# Stage commands in dvc.yaml call `cdbench`, which lives in the venv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup sysdeps demo demo-snapshot test test-fast lint format lock clean-demo

# The virtual environment, rebuilt when the pins change: every version (direct and transitive)
# is in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) sysdeps

# RAR extraction (CDD) needs an external tool; Debian's unar and bsdtar cover each other's gaps.
sysdeps:
	@if command -v unar >/dev/null && command -v bsdtar >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq unar libarchive-tools >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq unar libarchive-tools >/dev/null); \
	else \
		echo "warning: install 'unar' and 'libarchive-tools' (bsdtar) to extract CDD's RAR archive"; \
	fi

# The whole pipeline on the built-in synthetic data (CPU, minutes): generate the data, train
# every model x loss under the demo recipe two at a time (`cdbench launch`: one thread each,
# the OMP_NUM_THREADS=1 kernel path the demo references were measured on; each run recorded
# with `dvc commit`), evaluate them, list the runs recorded in MLflow, write the comparison
# report and check it against the demo references (each run must also beat the
# pixel-difference baseline by 10 F1 points).
demo: setup
	$(BIN)/cdbench stages --check
	$(BIN)/dvc repro synth
	$(BIN)/cdbench launch --glob '*-synthetic*' --workers 2 --threads 1
	$(BIN)/dvc repro --glob 'evaluate@*-synthetic*'
	$(BIN)/dvc repro --single-item report
	$(BIN)/cdbench runs --dataset synthetic
	$(BIN)/cdbench check --profile demo --min-gain-over-baseline 10

# reports/ is not in git (docs/pipeline.md): after `make demo`, copy its report into the
# committed snapshot that docs/demo.md shows, and commit that when it should change.
demo-snapshot:
	mkdir -p docs/demo-report/figures
	cp reports/comparison.md reports/ablation.csv docs/demo-report/
	cp reports/figures/*-synthetic.png docs/demo-report/figures/

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy benchmark

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin every transitive version after changing a pin in pyproject.toml.
lock: setup
	$(BIN)/pip freeze --exclude-editable --exclude cdbench | sed '1i # Exact versions of every package (direct and transitive) the suite was tested with on\n# Linux x86-64, Python 3.11. The Makefile installs with `pip install -c constraints.txt`.\n# Regenerate with `make lock` after changing a pin in pyproject.toml.' > constraints.txt
