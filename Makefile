# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/data)
export XLA_FLAGS ?= --xla_force_host_platform_device_count=8

.PHONY: venv parity-venv test demo lint clean

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

# The whole suite. Tests on the real CLUE snapshot run when ../shared/data exists.
test: venv parity-venv
	$(PY) -m ruff check .
	GAU_JAX_SHARED_DATA=$$( [ -d "$(SHARED_DATA)" ] && echo "$(SHARED_DATA)" ) \
	  $(PY) -m pytest -n 2 -rs --durations=15 tests

# The main job on data that ships with pip (no download).
demo: venv
	XLA_FLAGS= $(PY) -m experiments.demo --workdir runs/demo

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) $(PARITY_VENV) runs
