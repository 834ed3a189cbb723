# Two commands for a newcomer: `make demo` (the pipeline end to end) and `make test` (the suite).
# Prerequisites: Python 3.11+ and the Debian packages in deploy/debian-packages.txt (Java 17+,
# Maven, Chromium, Alertmanager, ...); `make prereqs` checks them and says what to install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install broker prereqs clean

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

test: broker
	$(BIN)/python -m pytest -q

clean:
	-$(BIN)/riskwatch kafka stop
	rm -rf var
