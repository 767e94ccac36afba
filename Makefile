# Blink — two commands: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg constraints.txt | cksum | cut -d' ' -f1)
SIZE ?= demo

.PHONY: demo test test-fast prereq install stop airflow-ui report bench bench-serving bench-scale lint clean

# The virtual environment is rebuilt only when setup.cfg or constraints.txt change.
$(STAMP): setup.cfg constraints.txt
	@$(MAKE) --no-print-directory prereq
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

# One clear message for each missing system dependency.
prereq:
	@bash scripts/check_prereqs.sh

demo: $(STAMP)
	$(BIN)/python -m tools.demo --size $(SIZE)

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration"

lint: $(STAMP)
	$(BIN)/ruff check blink jobs serving contracts dags tools tests
	$(BIN)/mypy blink jobs serving contracts dags tools

stop:
	@test -x $(BIN)/blink && $(BIN)/blink stop || echo "nothing to stop (no .venv)"

airflow-ui: $(STAMP)
	$(BIN)/blink airflow-ui

# The analysts' data-quality report (Great Expectations Data Docs) on http://127.0.0.1:8099
report: $(STAMP)
	$(BIN)/python scripts/serve_report.py

# Open-loop HTTP benchmark of the published version (run `make demo` first).
bench: $(STAMP)
	$(BIN)/blink bench

# Serving at the SPEC's scale (100 k items, 500 k users) without waiting for the batch: a version
# built directly (blink serving-model), then the open-loop benchmark with each path's highest rate.
BENCH_VAR ?= var-bench-serving
BENCH_ENV := BLINK_ENV=bench BLINK_PATHS__VAR_DIR=$(BENCH_VAR) \
	BLINK_SERVING__INGEST_TOKEN=$${BLINK_SERVING__INGEST_TOKEN:-bench-local-token}
bench-serving: $(STAMP)
	$(BENCH_ENV) $(BIN)/blink serving-model --scale bench
	$(BENCH_ENV) $(BIN)/blink bench --rate 100 --seconds 20 --highest-rate 100,200,300,400,600,800
	$(BENCH_ENV) $(BIN)/blink stop

# The batch layer at growing sizes: daily fit + hourly refresh per size (not part of make test).
# SIZES=tiny,demo,bench for the SPEC's scale (3.4 GiB of data, hours on 2 cores).
SIZES ?= tiny,demo
bench-scale: $(STAMP)
	$(BIN)/blink bench-scale --sizes $(SIZES)

clean: stop
	rm -rf var
