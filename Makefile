# compiler_kit: `make demo` and `make test` work on a fresh machine: each creates .venv when missing and installs
# the project with its pinned dependencies first. Targets are idempotent (file targets and a stamp).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.ckit-installed
DIGITS := calibration/digits/eval.npz
KERAS_MODEL := recipes/models/digits_cnn.keras

.PHONY: setup data models demo test lint bench clean

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes. pip's download cache stays in its default place (~/.cache/pip).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --quiet -e ".[dev]"
	@touch $@

data: $(DIGITS)
$(DIGITS): calibration/digits.py | $(STAMP)
	$(PY) -m calibration.digits

models: $(KERAS_MODEL)
$(KERAS_MODEL): recipes/models/digits_keras.py $(DIGITS) | $(STAMP)
	$(PY) -m recipes.models.digits_keras

demo: $(KERAS_MODEL)
	$(BIN)/ckit build recipes/digits_keras.yaml

test: setup
	$(PY) -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(KERAS_MODEL)
	$(PY) benchmarks/latency.py

clean:
	rm -rf build benchmarks/results calibration/digits $(KERAS_MODEL)
