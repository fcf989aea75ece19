# The two commands a newcomer needs: `make demo` and `make test`. Both set up from scratch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AZURE_VENV := .venv-azure
AZURE_STAMP := $(AZURE_VENV)/.installed

.PHONY: setup demo test bench firmware deb clean require-root

AUDITD_DEBS := build/debs/.downloaded

setup: $(STAMP) $(AZURE_STAMP) $(AUDITD_DEBS)

$(STAMP): pyproject.toml tools/system-packages.txt
	tools/setup_system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Microsoft's device SDK pins paho-mqtt < 2: its own venv, for tests/hub/test_azure_sdk.py.
$(AZURE_STAMP): tools/azure-sdk-requirements.txt
	$(PYTHON) -m venv $(AZURE_VENV)
	$(AZURE_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/azure-sdk-requirements.txt
	touch $(AZURE_STAMP)

# auditd's packages, for the test that runs a real auditd beside the agent in a throw-away overlay
# of this system (tests/collectors/test_audit.py): downloaded here, never installed on the machine.
$(AUDITD_DEBS):
	mkdir -p build/debs
	cd build/debs && { apt-get download -q auditd libauparse0 >/dev/null 2>&1 || \
	    { apt-get -o DPkg::Lock::Timeout=900 update -qq && apt-get download -q auditd libauparse0 >/dev/null; }; }
	touch $@

demo: setup
	$(BIN)/microagent demo

# Live collectors need root: netlink, raw packet sockets, network namespaces (see README).
require-root:
	@[ "$$(id -u)" = 0 ] || { echo "make test runs as root (netlink, raw sockets, network namespaces, login): use sudo make test" >&2; exit 2; }

test: require-root setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# The 32-bit MicroPython targets with the agent frozen in, from MICROPY_SRC (docs/targets.md).
firmware: setup
	cmake -S . -B build/cmake -DMICROPY_SRC="$(MICROPY_SRC)" >/dev/null
	cmake --build build/cmake --target firmware -- --no-print-directory

bench: setup
	$(BIN)/python -m bench

# build/microagent_<version>_<arch>.deb (docs/packaging.md)
deb: setup
	PYTHON=$(BIN)/python packaging/build-deb.sh

clean:
	rm -rf $(VENV) $(AZURE_VENV) build *.egg-info .pytest_cache
