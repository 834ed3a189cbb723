# Two commands for a newcomer: `make demo` (the pipeline end to end) and `make test` (the suite).
# Prerequisites: Python 3.11+, Java 17+, Maven 3.8+ (Kafka's jars come from Maven Central).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install broker clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

broker: install
	$(BIN)/riskwatch kafka start

demo: broker
	$(BIN)/riskwatch demo

test: broker
	$(BIN)/python -m pytest -q

clean:
	-$(BIN)/riskwatch kafka stop
	rm -rf var
