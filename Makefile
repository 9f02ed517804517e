# Two entry points (see README): `make run` starts the app, `make test` runs every test.
# Both create .venv and install what they need on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run run-ray test test-fast test-cpus demo bench browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The pinned requirements, then this project itself (editable: nst_core and ui import from the checkout).
$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.ray: requirements-ray.txt $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-ray.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements-ray.txt $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Debian's chromium for the real-browser test (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: $(VENV)/.runtime
	$(BIN)/streamlit run app.py --server.port $(PORT)

# Runs on Ray (README "More than one server"): RAY_ADDRESS joins a cluster, else a local instance starts.
run-ray: $(VENV)/.ray
	NST_RUNNER=ray $(BIN)/streamlit run app.py --server.port $(PORT)

test: $(VENV)/.dev browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q --durations=25 tests

# The development loop: the method, the queue and the pages in this process; no browser, Ray, sweeps, worker
# processes or command-line processes (about 100 s on 2 cores).
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m "not browser and not ray and not sweep and not process" tests

# The numerics-sensitive tests (optimiser, schedule, Lab, backbone) under other CPUs' kernels: ONEDNN_MAX_CPU_ISA
# holds oneDNN to older instructions, with their own rounding ("native": no cap, as `make test` runs them).
CAPS ?= native AVX2 AVX512_CORE
test-cpus: $(VENV)/.dev
	@for cap in $(CAPS); do \
	  echo "== numerics tests, ONEDNN_MAX_CPU_ISA=$$cap"; \
	  if [ $$cap = native ]; then env -u ONEDNN_MAX_CPU_ISA $(BIN)/python -m pytest -q -m numerics tests || exit 1; \
	  else ONEDNN_MAX_CPU_ISA=$$cap $(BIN)/python -m pytest -q -m numerics tests || exit 1; fi; \
	done

# The command line on a sample (writes out/demo.png and out/demo.gif).
demo: $(VENV)/.runtime
	mkdir -p out
	$(BIN)/python -m nst_core samples/content/chelsea.png samples/styles/starry_night.jpg \
	  --output out/demo.png --gif out/demo.gif --metrics out/demo.json

bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks.bench_engine
