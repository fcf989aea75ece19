import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpy import run_micropython  # noqa: E402
from netns import private_network as _private_network  # noqa: E402

# `make test` runs as root and refuses to start otherwise; a test run by hand without root is
# skipped with this reason (shown by -ra), so the precondition is visible, never silent.
NEEDS_ROOT = "needs root: "


def skip_unless_root(reason):
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT + reason)


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_root(reason): the test needs root for REASON")


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("requires_root")
    if marker is not None:
        skip_unless_root(marker.args[0])


def pytest_terminal_summary(terminalreporter):
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if NEEDS_ROOT in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line("%d tests need root and were skipped: run them with `sudo make test` "
                                    "(see README, \"What make test needs\")" % len(skipped))


@pytest.fixture
def micropython():
    """Runs a script inside the real MicroPython unix port; fails on a non-zero exit."""
    return run_micropython


@pytest.fixture
def private_network():
    """The test runs in a network namespace of its own (see tests/netns.py): loopback traffic of
    other programs on the machine cannot reach its collectors, caches or ports."""
    skip_unless_root("a network namespace of its own (CAP_SYS_ADMIN)")
    with _private_network():
        yield
