# Two entry points: `make synth` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev
STAMP := $(VENV)/.installed

.PHONY: venv synth test lint typecheck bench clean

# The same pinned runtime versions as `pulumi up` installs (requirements.txt), plus dev tools.
$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e '.[dev]'
	touch $(STAMP)

# checkov pins boto3 and packaging versions the program cannot use: its own virtualenv
# (tests/test_checkov.py finds it there).
CHECKOV := $(VENV)/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet checkov==3.3.30

venv: $(STAMP) $(CHECKOV)

synth: $(STAMP)
	$(BIN)/sdfleet synth --stack $(STACK)

test: $(STAMP) $(CHECKOV)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m sdfleet.agent.bench
	$(BIN)/python -m sdfleet.bench_synth

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
