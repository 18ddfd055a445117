# Two commands for a newcomer (see README): `make serve` and `make test`.
# Both create .venv with the default python3 (3.11 or newer) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test check proto

# The service alone, then the development tools on top (tests, linters, generators).
$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## Run the whole service on the embedded default (SQLite, in-process queue, local files,
## bundled Replicate emulator): gRPC on 127.0.0.1:50051, HTTP on 127.0.0.1:8080.
serve: $(VENV)/.installed
	$(BIN)/mediagen serve

## Run the tests (starts the machine's PostgreSQL and Redis if they are stopped).
test: $(VENV)/.installed-dev
	bash scripts/services.sh
	$(BIN)/pytest

## Static checks: proto lint, generated code up to date, ruff, mypy.
check: $(VENV)/.installed-dev
	npx --yes @bufbuild/buf lint
	$(BIN)/python scripts/generate_protos.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Regenerate gen/ from proto/.
proto: $(VENV)/.installed-dev
	$(BIN)/python scripts/generate_protos.py
