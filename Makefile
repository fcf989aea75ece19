# The two commands a newcomer needs: `make demo` and `make test`. Both set up from scratch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench firmware clean

setup: $(STAMP)

$(STAMP): pyproject.toml tools/system-packages.txt
	tools/setup_system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/microagent demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# The 32-bit MicroPython targets with the agent frozen in, from MICROPY_SRC (docs/targets.md).
firmware: setup
	cmake -S . -B build/cmake -DMICROPY_SRC="$(MICROPY_SRC)" >/dev/null
	cmake --build build/cmake --target firmware -- --no-print-directory

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
