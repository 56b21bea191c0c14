# Two commands for a newcomer: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
PORT ?= 4566

.PHONY: help venv build-ext browser test test-ui lint typecheck unit demo airflow local-aws bench bench-reconcile bench-reconcile-log bench-state load clean lambda-zip

help:
	@echo "make demo       - run the main job end to end on the embedded default"
	@echo "make test       - lint, type-check and run the whole test suite (but the browser test)"
	@echo "make test-ui    - the browser test: Airflow UI and Lake health in Chromium"
	@echo "make airflow    - a local Airflow UI (with Lake health) against the local AWS stack"
	@echo "make local-aws  - start the local AWS emulator on 127.0.0.1:$(PORT)"
	@echo "make bench      - conversion benchmark against the seed's approach"
	@echo "make build-ext  - build the optional compiled codec in place (make venv does it too)"
	@echo "make bench-reconcile - reconciliation from the current state vs the log (10M/30M items)"
	@echo "make bench-reconcile-log - latest state and key-level diff over the log on DuckDB (10M rows)"
	@echo "make bench-state - current state: daily merge vs recompute, reads (10M items, 30 days)"
	@echo "make load       - backfill + export reconciliation of 5M items through Airflow (~40 min)"

# The virtualenv is built from the committed lock only: the same versions everywhere.
$(BIN)/.installed: requirements-dev.txt requirements.txt pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements-dev.txt
	DYNAMO_LAKE_SKIP_EXT=1 $(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

venv: $(BIN)/.installed build-ext

# The optional compiled codec, built in place (a no-op when up to date). Without a C
# compiler it prints one notice and the pure codec does the work; `make test` passes either
# way. DYNAMO_LAKE_PURE_CODEC=1 selects the pure codec even when it is built.
build-ext: $(BIN)/.installed
	$(BIN)/python setup.py -q build_ext --inplace

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	$(BIN)/cfn-lint include/cloudformation/*.yaml

typecheck: venv
	$(BIN)/mypy

# The browser test drives Debian's chromium (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	@echo "installing Debian's chromium for the browser test"
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium

browser: $(CHROMIUM)

# The model scenarios (hundreds of seeded histories, each independent) run on every core.
SCENARIOS := tests/model/test_scenarios.py
test: lint typecheck build-ext
	$(BIN)/pytest --ignore=$(SCENARIOS)
	$(BIN)/pytest -n auto $(SCENARIOS)

# The browser test (about 4 minutes): a real Airflow and Chromium. CI runs it after `make test`.
test-ui: venv browser
	$(BIN)/pytest -m browser tests/ui

demo: venv
	$(BIN)/python dev/demo.py

airflow: venv
	$(BIN)/python dev/airflow_local.py

local-aws: venv
	PYTHONPATH=dev $(BIN)/python -m local_aws --port $(PORT)

lambda-zip: venv
	$(BIN)/python dev/build_lambda_zip.py --output build/lambda.zip

bench: venv
	$(BIN)/python benchmarks/bench_convert.py

# About 50 minutes at the default scale the first time, 30 once its exports are cached.
bench-reconcile: venv
	$(BIN)/python benchmarks/bench_reconcile_state.py

bench-reconcile-log: venv
	$(BIN)/python benchmarks/bench_reconcile.py

bench-state: venv
	$(BIN)/python benchmarks/bench_state.py

# Not part of `make test`: about 40 minutes and 15 GB of memory (see the README).
load: venv
	$(BIN)/python benchmarks/load_run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var demo-out
