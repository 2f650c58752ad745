# fast-semantic-segmentation: every target works as the first command on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROTOS := $(wildcard protos/*.proto)
PB2 := $(PROTOS:.proto=_pb2.py)

.PHONY: help venv build build-protos protos test test-timing demo bench tensorboard lint format clean clean-protos clean-pyc

help:
	@echo "make demo          generate the synthetic dataset and run the demo"
	@echo "make test          run the test suite (make test-timing: the wall-time checks, idle machine)"
	@echo "make bench         speed, size, memory -> benchmarks/RESULTS.md (<20 min on 2 cores; BENCH_ARGS=--quick)"
	@echo "make build-protos  compile protos/*.proto (alias: protos, build)"
	@echo "make tensorboard   TensorBoard on LOGDIR (default: the demo's output) at http://localhost:6006"
	@echo "make lint          ruff check and format check"
	@echo "make clean         remove generated protos, caches and the virtualenv"

# The virtualenv is refreshed whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

protos/%_pb2.py: protos/%.proto $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. $<

build-protos: $(PB2)
protos: build-protos
build: build-protos

# Test files are spread over TEST_WORKERS processes (each file's tests stay in one, so module
# fixtures are built once); TensorFlow leaves cores idle while it traces and starts subprocesses.
TEST_WORKERS ?= 2
test: build-protos
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 -m "not timing" tests

# The few tests that assert on measured wall time (loosely): for an idle machine.
test-timing: build-protos
	$(PY) -m pytest -q -m timing tests

demo: build-protos
	$(PY) demo.py

bench: build-protos
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# The scalars and images train.py and eval.py write (docs/training.md lists them).
LOGDIR ?= demo_output
tensorboard: venv
	$(PY) -m tensorboard.main --logdir $(LOGDIR) --host $${HOST:-localhost} --port $${PORT:-6006}

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean-protos:
	rm -f protos/*_pb2.py protos/*_pb2.pyi

clean-pyc:
	find . -name '__pycache__' -type d -prune -exec rm -rf {} +

clean: clean-protos clean-pyc
	rm -rf $(VENV) .pytest_cache .ruff_cache
