# Every target sets itself up: a fresh machine needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow test-sim lint bench demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

# pytest exits 5 when it collected nothing: that is a failure, never a pass.
test: install
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo 'make test: no tests collected' >&2; exit 1; fi; exit $$rc

test-slow: install
	$(PY) -m pytest -q -m slow

# The simulator at full size (1,000-node crash and dissemination, an hour at 200 nodes, slow
# nodes, partition): about half an hour on one core, so not part of CI (see docs/benchmarks.md).
test-sim: install
	$(PY) -m pytest -q -m sim_large

lint: install
	$(PY) -m ruff check corrosion_py tests bench examples
	$(PY) -m ruff format --check corrosion_py tests bench examples
	$(PY) -m mypy

bench: install
	$(PY) bench/crdt_bench.py
	$(PY) bench/store_bench.py
	$(PY) bench/swim_udp_bench.py
	$(PY) bench/replication_bench.py
	$(PY) bench/api_bench.py
	$(PY) bench/claims_bench.py

demo: install
	$(PY) -m corrosion_py.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
