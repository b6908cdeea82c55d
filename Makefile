# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CLUE snapshot: ../shared/data beside the repository; `make test SHARED_DATA=/path/to/data`
# for another. Tests that need it skip (with the reason) when the folder does not exist.
SHARED_DATA ?= ../shared/data
SHARED_DIR = $(abspath $(SHARED_DATA))
# (a path given on the command line is passed even when missing: those tests then say so)
TEST_ENV = GAU_JAX_SHARED_DATA=$(if $(filter file,$(origin SHARED_DATA)),$$( [ -d "$(SHARED_DIR)" ] \
  && echo "$(SHARED_DIR)" ),$(SHARED_DIR))
export XLA_FLAGS ?= --xla_force_host_platform_device_count=8
# JAX's persistent compilation cache (tests/conftest.py sets the same default): reruns load
# compiled XLA programs instead of compiling them again. JAX_COMPILATION_CACHE_DIR= disables it.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax

.PHONY: venv parity-venv test test-fast demo lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

# The PyTorch ports (roformer, gau-alpha) for the weight-parity tests live in their own venv:
# they need transformers 4.x, whose pins clash with .venv's tokenizers. torch 2.13.0 is the CPU
# build. SKIP_PARITY=1 skips this (the parity tests then skip with a visible reason).
PARITY_VENV ?= .venv-parity
$(PARITY_VENV)/.installed:
	$(PYTHON) -m venv $(PARITY_VENV)
	$(PARITY_VENV)/bin/pip install -q --upgrade pip
	$(PARITY_VENV)/bin/pip install -q torch==2.13.0
	$(PARITY_VENV)/bin/pip install -q "transformers==4.47.1" roformer==0.4.3 gau-alpha==0.0.3 \
	  safetensors numpy tensorflow-cpu
	touch $@

parity-venv: $(if $(SKIP_PARITY),,$(PARITY_VENV)/.installed)

# Each module runs whole on one worker (its trained-workdir fixtures are built once), the
# heaviest modules first, so both workers stay busy to the end (tests/conftest.py).
XDIST_SCHED = --dist loadscope --no-loadscope-reorder

# The whole suite (what CI runs). Tests on the real CLUE snapshot run when $(SHARED_DATA) exists.
test: venv parity-venv
	$(PY) -m ruff check .
	$(TEST_ENV) $(PY) -m pytest -n 2 $(XDIST_SCHED) -rfEs --durations=15 tests

# The inner loop: everything but the tests marked slow or parity (no parity venv needed).
test-fast: venv
	$(PY) -m ruff check .
	$(TEST_ENV) $(PY) -m pytest -n 2 $(XDIST_SCHED) -q -rfEs -m "not slow and not parity" \
	  --durations=10 tests

# The main job on data that ships with pip (no download).
demo: venv
	XLA_FLAGS= $(PY) -m experiments.demo --workdir runs/demo

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) $(PARITY_VENV) runs .cache
