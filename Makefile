# make demo   runs the worked examples on the embedded default (the offline wallet); it installs
#             the package alone
# make test   lint, type-check, and test everything on every supported Python (3.11 to 3.13)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What is installed in $(VENV): the package alone (enough for the demo), or with the dev extra
# (linters, type checker, test tools, every optional part) that the tests need.
CORE_STAMP := $(VENV)/.installed-core
STAMP := $(VENV)/.installed
# The tests also run on each of these versions, in its own .venv-X.Y; a version that is the
# main .venv's, or that has no interpreter here, is skipped with a message.
PYTHONS ?= 3.11 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv

.PHONY: demo test lint typecheck pytest pytest-versions bench clean openapi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(CORE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(CORE_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(CORE_STAMP)

demo: $(CORE_STAMP)
	$(BIN)/python examples/agentforce_use_cases.py

lint: $(STAMP)
	$(BIN)/ruff check flexcredits_sdk tests examples benchmarks scripts
	$(BIN)/ruff format --check flexcredits_sdk tests examples benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy --strict flexcredits_sdk
	$(BIN)/mypy --strict tests/typing_api.py
	$(BIN)/mypy --strict scripts

pytest: $(STAMP)
	$(BIN)/python -m pytest

pytest-versions: $(addprefix pytest-,$(PYTHONS))

# pytest-X.Y: the tests on Python X.Y, found through pyenv, in $(PYENV_ROOT), or on PATH (a
# pyenv shim that is not active answers nothing, so each candidate is asked for its version).
pytest-%: $(STAMP)
	@is_version='import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$*")'; \
	if $(BIN)/python -c "$$is_version"; then \
	    echo "Python $*: tested above, in $(VENV)"; exit 0; \
	fi; \
	python=; \
	for candidate in "$$(pyenv prefix $* 2>/dev/null | head -n 1)/bin/python$*" \
	        $(PYENV_ROOT)/versions/$*.*/bin/python$* "$$(command -v python$*)"; do \
	    if [ -x "$$candidate" ] && "$$candidate" -c "$$is_version" 2>/dev/null; then \
	        python=$$candidate; break; \
	    fi; \
	done; \
	if [ -z "$$python" ]; then echo "skipping Python $*: no interpreter found"; exit 0; fi; \
	echo "Python $*: $$python, in .venv-$*"; \
	$(MAKE) --no-print-directory VENV=.venv-$* PYTHON="$$python" pytest

test: lint typecheck pytest pytest-versions

# make mutation   how many mutants of the ledger and the rate cards their own tests kill, per
#                 module (several minutes; not part of make test)
.PHONY: mutation
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py

# make openapi   write flexcredits_sdk/openapi.json, the protocol's OpenAPI document, from the
#                service's routes (the service serves the same document at /openapi.json)
openapi: $(STAMP)
	$(BIN)/python -m flexcredits_sdk.server._app

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) $(VENV)-* .pytest_cache .mypy_cache .ruff_cache
