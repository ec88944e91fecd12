# `make demo` sets up .venv (see scripts/setup.sh) and runs the demo; `make test` runs the test suite.
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: setup demo test docs bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

demo: setup
	$(VENV)/bin/titans-seq demo

test: setup
	$(PYTHON) -m pytest

docs: setup
	VENV=$(VENV) EXTRAS=test,docs bash scripts/setup.sh
	rm -rf .cache/docs && for page in docs/tutorials/*.md; do mkdir -p .cache/docs/$$(basename $$page .md); done
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

bench: setup
	VENV=$(VENV) EXTRAS=test,bench bash scripts/setup.sh
	$(PYTHON) benchmarks/memory_op.py --threads 2

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
