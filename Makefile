# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-real lint bench bench-real bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/ruff check comfylock tests examples benchmarks
	$(BIN)/python -m pytest -q

# A real ComfyUI compiled, synced, verified and broken on purpose (GBs unless uv's cache holds them).
test-real: $(STAMP)
	COMFYLOCK_REAL_TESTS=1 $(BIN)/python -m pytest -q -m real

lint: $(STAMP)
	$(BIN)/ruff check comfylock tests examples benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# The corpus against PyPI (cases 1-5, V1-V2), then the real ComfyUI broken on purpose and undone by itself.
bench-real: $(STAMP)
	$(BIN)/python benchmarks/run.py --real
	COMFYLOCK_REAL_TESTS=1 $(BIN)/python -m pytest -q -m real

bench-peers: $(STAMP)
	$(BIN)/python benchmarks/run.py --peers

clean:
	rm -rf $(VENV) demo .bench .pytest_cache
