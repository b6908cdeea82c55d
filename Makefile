# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/data)
export XLA_FLAGS ?= --xla_force_host_platform_device_count=8

.PHONY: venv test demo lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

# The whole suite. Tests on the real CLUE snapshot run when ../shared/data exists.
test: venv
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
	rm -rf $(VENV) runs
