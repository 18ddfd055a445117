# Two commands for a newcomer (see README): `make serve` and `make test`.
# Both create .venv with the default python3 (3.11 or newer) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test check lint proto

$(BIN)/mediagen: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## Run the whole service on the embedded default (SQLite, in-process queue, local files,
## bundled Replicate emulator): gRPC on 127.0.0.1:50051, HTTP on 127.0.0.1:8080.
serve: $(BIN)/mediagen
	$(BIN)/mediagen serve

## Run the tests (starts the machine's PostgreSQL and Redis if they are stopped).
test: $(BIN)/mediagen
	bash scripts/services.sh
	$(BIN)/pytest

## Static checks: proto lint, generated code up to date, ruff, mypy.
check: $(BIN)/mediagen
	npx --yes @bufbuild/buf lint
	$(BIN)/python scripts/generate_protos.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Regenerate gen/ from proto/.
proto: $(BIN)/mediagen
	$(BIN)/python scripts/generate_protos.py
