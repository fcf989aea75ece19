import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpy import REPO, run_micropython  # noqa: E402
from needs_root import NEEDS_ROOT, root_reason, skip_unless_root  # noqa: E402
from netns import private_network as _private_network  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_root(reason, before_kernel=None): the test needs root "
                                       "for REASON (only on kernels older than BEFORE_KERNEL, if given)")


def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker("requires_root")
        why = marker and root_reason(*marker.args, **marker.kwargs)
        if why:
            item.add_marker(pytest.mark.skip(reason=why))


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


def _build_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "build_firmware", os.path.join(REPO, "tools", "build_firmware.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def firmware_targets(request):
    """{target: path} of the 32-bit targets `make firmware` builds (micropython32,
    qemu-cortex-m3), built once for the whole session, or reused when their stamp says they are
    current. The build's progress shows on the terminal; a build that cannot be done fails the
    tests that need it, with the one line saying why."""
    builder = _build_module()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():
            return builder.ensure(builder.TARGETS)
    except builder.BuildError as exc:
        pytest.fail("make firmware: %s" % exc, pytrace=False)
