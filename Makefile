# make demo   runs the worked examples on the embedded default (the offline wallet)
# make test   lint, type-check and test everything
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/agentforce_use_cases.py

lint: $(STAMP)
	$(BIN)/ruff check flexcredits_sdk tests examples benchmarks
	$(BIN)/ruff format --check flexcredits_sdk tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict flexcredits_sdk
	$(BIN)/mypy --strict tests/typing_api.py

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
