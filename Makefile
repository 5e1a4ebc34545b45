# The two set-up commands are `make demo` and `make test`; both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean browser

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

# Debian's chromium for tests/test_browser.py (Playwright's own browser download fails offline).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || $(SUDO) apt-get install -y --no-install-recommends chromium \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

# Benchmarks: the [bench] extra, then D2L's package without its pinned dependencies.
bench: $(STAMP)
	$(BIN)/python -m pip install -e '.[bench]'
	$(BIN)/python -m pip install --no-deps 'd2l==1.0.3'
	$(BIN)/python benchmarks/data_pipeline.py --quick
	$(BIN)/python benchmarks/train_step.py --quick
	$(BIN)/python benchmarks/inference.py --quick
