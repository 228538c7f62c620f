# Two commands on a fresh machine:  make demo  (the main job)  and  make test  (the tests).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo $(DEMO_ARGS)

test: lint
	$(PY) -m pytest -ra $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy .

bench: $(STAMP)
	$(PY) bench/deploy_bench.py --participants 1000 --latency-ms 50

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache .mypy_cache
