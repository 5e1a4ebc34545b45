# The two set-up commands are `make demo` and `make test`; both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pixelwise demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# Benchmarks: the [bench] extra, then D2L's package without its pinned dependencies.
bench: $(STAMP)
	$(BIN)/python -m pip install -e '.[bench]'
	$(BIN)/python -m pip install --no-deps 'd2l==1.0.3'
	$(BIN)/python benchmarks/data_pipeline.py --quick
	$(BIN)/python benchmarks/train_step.py --quick
	$(BIN)/python benchmarks/inference.py --quick
