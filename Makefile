# make run    - install (if needed) and run the demo: import demo/teachers.csv, serve http://127.0.0.1:5000
# make test   - the whole test suite against throw-away redis-server, PostgreSQL and Chromium
#               (scripts/with-test-services.sh); extra pytest arguments: make test PYTEST_ARGS='-k csv'
# make bench  - the benchmarks
# make clean  - remove the virtualenv and build/test leftovers

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: .venv run test bench clean

.venv: $(STAMP)

# Re-installs whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -e '.[test]'
	touch $@

run: .venv
	$(VENV)/bin/scholarise demo

test: .venv
	scripts/with-test-services.sh $(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: .venv
	scripts/with-test-services.sh $(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
