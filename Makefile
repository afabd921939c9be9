# Two commands for a fresh clone:
#   make serve   -- set up .venv and start the service on http://127.0.0.1:8000
#                   (make serve PORT=9000 HOST=0.0.0.0 to change the address)
#   make test    -- set up .venv and run lint, types plus the whole test suite
# and, for the engine benchmark with Larq Compute Engine beside it:
#   make bench-peers  -- set up .venv-peers (LCE 0.16, TensorFlow 2.16, Keras 2)
#                        and run `python -m bench.engine --lce on $(BENCH_ARGS)`
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The peer's environment: bench/_peers.py looks for it at this path.
PEERS_VENV  := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
BENCH_ARGS  ?=
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install test lint format serve bench bench-peers clean

# .[dev] = the library, the service extra, both storage drivers and the test
# tools; BNN_REQUIRE_CORE=1: the compiled core (optional for `pip install .`)
# must build here, since the engine, the service and the tests use it.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	BNN_REQUIRE_CORE=1 $(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# python -m bnncore_service: uvicorn with the connection limits of the BNN_* settings
serve: $(STAMP)
	$(BIN)/python -m bnncore_service --host $(HOST) --port $(PORT)

bench: $(STAMP)
	$(BIN)/python -m bench

$(PEERS_STAMP): bench/peers-requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet -r bench/peers-requirements.txt
	touch $(PEERS_STAMP)

# e.g. make bench-peers BENCH_ARGS=--quick (or --write-docs)
bench-peers: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m bench.engine --lce on $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache .ruff_cache .mypy_cache
