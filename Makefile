# The README's two commands: `make demo` and `make test`.
# Each creates .venv with pip when it is missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xscan-installed

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/xscan demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts benchmarks

clean-venv:
	rm -rf $(VENV)
