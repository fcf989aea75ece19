import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpy import REPO, run_micropython  # noqa: E402


@pytest.fixture
def micropython():
    """Runs a script inside the real MicroPython unix port; fails on a non-zero exit."""
    return run_micropython


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
