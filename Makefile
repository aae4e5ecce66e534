# Two commands for a newcomer: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install install-test kotlin clean data model bench

$(BIN)/python:
	@echo "creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python setup.cfg setup.py
	@echo "installing tflite_opt and its dependencies into $(VENV): TensorFlow, tf-keras, tfmot, LiteRT (TensorFlow alone is about 1.9 GB;"
	@echo "a few minutes the first time, pip prints nothing meanwhile)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	@echo "installing the test tools (pytest, pytest-xdist, ruff, import-linter, Ray)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# MediaPipe Tasks, a real client the tests run the converted files in. A second pip call, not the test extra: mediapipe
# declares absl-py~=2.3 and tensorflow-model-optimization 0.8 absl-py~=1.2, so one resolver call has no solution; both
# run with absl-py 2 (pip says so in an "ERROR: ... dependency conflicts" line and exits 0). Redone after every test
# install, which may take absl-py back to 1.x.
MEDIAPIPE := mediapipe>=1.2.3,<1.3

$(VENV)/.installed-mediapipe: $(VENV)/.installed-test
	@echo "installing MediaPipe, a real app runtime the tests run the converted files in"
	$(BIN)/python -m pip install --quiet "$(MEDIAPIPE)"
	touch $@

# Debian's Kotlin compiler: the tests compile the generated Kotlin against stubs of Android and LiteRT and run its
# preprocessing. Installed where apt-get runs as root (CI, a fresh machine); elsewhere that test skips and says why.
kotlin:
	@command -v kotlinc >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq --no-install-recommends kotlin >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends kotlin >/dev/null; }; }; } || \
	  echo "kotlinc is not installed (it needs apt-get as root): the Kotlin compile test will skip"

install: $(VENV)/.installed

install-test: $(VENV)/.installed-mediapipe kotlin

## make run: convert the embedded default model to full-integer int8 and print the comparison.
run: install
	$(BIN)/python -m tflite_opt.convert --full-int8 --overwrite

## make test: lint, then the test suite, on two workers (pytest-xdist), each test file whole on one worker so that
## the models a file's tests share are built once.
test: install-test lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

## make lint: style, complexity (C901) and the import layering (commands > jobs > stages > core, no cycles).
lint: install-test
	$(BIN)/ruff check tflite_opt tests benchmarks fuzz
	$(BIN)/ruff format --check tflite_opt tests benchmarks fuzz
	$(BIN)/lint-imports

## Regenerate the shipped data (needs the `data` extra) and retrain the default model.
data: install
	$(BIN)/python -m pip install --quiet -e ".[data]"
	$(BIN)/python -m tflite_opt.default_model export

model: install
	$(BIN)/python -m tflite_opt.default_model train mnist_cnn
	$(BIN)/python -m tflite_opt.default_model train mnist_mobilenet

## Benchmarks (scripts that print figures, not tests): the grid, evaluation speed, agreement with LiteRT, timing under load,
## Keras 3 MobileNets converted and pruned, PTQ / QAT / PQAT / PCQAT on both reference models, the cost of uint8 input,
## and int8 against float32 on the common mobile backbones with XNNPACK's partitions.
bench: install
	$(BIN)/python benchmarks/grid.py
	$(BIN)/python benchmarks/eval_speed.py
	$(BIN)/python benchmarks/litert_compare.py
	$(BIN)/python benchmarks/busy_machine.py --mobilenet
	$(BIN)/python benchmarks/keras3_models.py
	$(BIN)/python benchmarks/collaborative.py
	$(BIN)/python benchmarks/io_types.py
	$(BIN)/python benchmarks/backbones.py
	$(BIN)/python benchmarks/hard_swish.py

clean:
	rm -rf artifacts .pytest_cache build *.egg-info
