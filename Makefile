# Two commands for a newcomer: `make demo` (the pipeline end to end) and `make test` (the suite).
# Prerequisites: Python 3.11+ and the Debian packages in deploy/debian-packages.txt (Java 17+,
# Maven, Chromium, Alertmanager, ...); `make prereqs` checks them and says what to install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test check fmt install broker prereqs clean

prereqs:
	@PYTHON=$(PYTHON) deploy/prereqs.sh

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: prereqs $(BIN)/.installed

broker: install
	$(BIN)/riskwatch kafka start

demo: broker
	$(BIN)/riskwatch demo

test: check broker
	$(BIN)/python -m pytest -q

# Lint, format and type checks (configured in pyproject.toml); `make test` runs them first.
check: install
	@$(BIN)/ruff check . || { echo "ruff check failed: run \`make fmt\` (fixes most), then fix the rest by hand"; exit 1; }
	@$(BIN)/ruff format --check . || { echo "ruff format failed: run \`make fmt\`"; exit 1; }
	@$(BIN)/mypy || { echo "mypy failed: fix the types above (run \`$(BIN)/mypy\` to re-check)"; exit 1; }

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	-$(BIN)/riskwatch kafka stop
	rm -rf var
