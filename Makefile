# Two entry points, both from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RAY    := $(VENV)/.installed-ray

.PHONY: install run test lint clean

# Re-installs only when the dependencies change. torch is pinned to 2.13.0 in
# pyproject.toml: the CPU build, not gigabytes of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Ray mode's extra, for the tests of tests/**/test_ray*.py (the bot itself runs without).
$(RAY): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $(RAY)

install: $(STAMP)

# The first run imports a sample history into console:general and trains its model for
# about a minute (with a progress bar); later runs open the channel straight away.
run: $(STAMP)
	$(BIN)/tsuzuki run --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint $(RAY)
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
