# `make test` sets up .venv (see scripts/setup.sh) and runs the whole test suite.
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: setup test bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

test: setup
	$(PYTHON) -m pytest

bench: setup
	VENV=$(VENV) EXTRAS=test,bench bash scripts/setup.sh
	$(PYTHON) benchmarks/memory_op.py --threads 2

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
