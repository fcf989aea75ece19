# The two commands a newcomer needs: `make demo` and `make test`. Both set up from scratch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench deb clean

setup: $(STAMP)

$(STAMP): pyproject.toml tools/system-packages.txt
	tools/setup_system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/microagent demo

test: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m bench

# build/microagent_<version>_<arch>.deb (docs/packaging.md)
deb: setup
	PYTHON=$(BIN)/python packaging/build-deb.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
